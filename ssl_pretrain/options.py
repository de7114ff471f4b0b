"""Options of a registered factory (encoder or pretext task) read from its keyword-only parameters.

A factory declares its user-facing options, their types and defaults in its own signature::

    def small_resnet(in_channels: int, *, widths: list[int] = (32, 64, 128), ...)

Everything after ``*`` is an option a config may set; the rest is supplied by the framework. A factory that
takes ``**kwargs`` may name dataclass instances in ``option_groups``: their fields are options too, with the
instances' values as defaults (the view options Exemplar, BYOL and VICReg share).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .typecheck import check_value


def option_signature(factory: Callable) -> dict[str, tuple[Any, Any]]:
    """Map option name -> (annotation, default) for the keyword-only parameters of ``factory``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = typing.get_type_hints(target)
    options = {}
    for name, param in inspect.signature(target).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            default = param.default
            if isinstance(default, tuple):
                default = list(default)
            options[name] = (hints.get(name, Any), default)
    for group in getattr(factory, "option_groups", ()):
        group_hints = typing.get_type_hints(type(group))
        for item in dataclasses.fields(group):
            default = getattr(group, item.name)
            options[item.name] = (group_hints[item.name], list(default) if isinstance(default, tuple) else default)
    return options


def resolve_options(factory: Callable, given: dict[str, Any], section: str) -> dict[str, Any]:
    """Type-check ``given`` against the factory's options and fill every default.

    Raises:
        ConfigError: for an unknown option or a value of the wrong type, naming ``section.option``.
    """
    signature = option_signature(factory)
    for key in given:
        if key not in signature:
            accepted = ", ".join(sorted(signature)) or "none"
            raise ConfigError(f"{section}.{key}", f"unknown key; accepted keys here: {accepted}")
    resolved = {}
    for name, (annotation, default) in signature.items():
        value = given.get(name, default)
        if value is inspect.Parameter.empty:
            raise ConfigError(f"{section}.{name}", "is required")
        resolved[name] = check_value(value, annotation, f"{section}.{name}")
    return resolved
