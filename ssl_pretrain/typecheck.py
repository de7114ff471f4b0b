"""Check a YAML value against a Python type annotation, naming the config key when it does not fit."""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Union

from .errors import ConfigError


def describe(annotation: Any) -> str:
    """A short human name for an annotation: ``int``, ``list of float``, ``one of 'a', 'b'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"list of {describe(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def check_value(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` (an int widened to float where a float is expected) or raise ConfigError."""
    result = _match(value, annotation)
    if result is _NO_MATCH:
        raise ConfigError(key, f"expected {describe(annotation)}, got {value!r}")
    return result


_NO_MATCH = object()


def _float_text(value: Any) -> Any:
    """A number written as text, as users type it: YAML 1.1 reads ``1e-3`` (no dot) as a string."""
    if not isinstance(value, str):
        return _NO_MATCH
    try:
        number = float(value)
    except ValueError:
        return _NO_MATCH
    return number if math.isfinite(number) else _NO_MATCH


def _match(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if annotation is type(None):
        return value if value is None else _NO_MATCH
    if origin is Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _NO_MATCH
    if origin in (Union, types.UnionType):
        for arg in args:
            result = _match(value, arg)
            if result is not _NO_MATCH:
                return result
        return _NO_MATCH
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _NO_MATCH
        items = [_match(v, args[0]) if args else v for v in value]
        return _NO_MATCH if any(i is _NO_MATCH for i in items) else items
    if origin is dict or annotation is dict:
        return value if isinstance(value, dict) else _NO_MATCH
    if annotation is bool:
        return value if isinstance(value, bool) else _NO_MATCH
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO_MATCH
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return _float_text(value)
    if annotation is str:
        return value if isinstance(value, str) else _NO_MATCH
    raise TypeError(f"unsupported annotation {annotation!r}")
