"""A command: one row of :data:`~ssl_pretrain.commands.table.COMMANDS`, read by the command line (its parser,
help and dispatch) and by the Python API (its function ``ssl.<name>``), and the one place both build the
command's config and run it (device prepared, seed set, precision announced).

A command is a module with ``run(config, [device,] **flags) -> result`` and ``show(result) -> str`` (what
the command line prints) plus one :class:`Command` row naming them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import Config, apply_overrides, current_key, read_yaml
from ..errors import BadInput

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


@dataclass(frozen=True)
class PathArg:
    """A path the command takes positionally (``ssl-pretrain probe RUN``) and as the API's argument ``name``.
    ``key``: the config key it fills (so ``evaluation.encoder=RUN`` works too), or None: passed to ``run`` as
    the keyword ``name``. ``many``: one or more paths (a list)."""

    name: str
    metavar: str
    help: str
    key: str | None = None
    many: bool = False
    required: bool = False


@dataclass(frozen=True)
class Flag:
    """A ``--option`` of the command line, the API's keyword ``name`` and ``run``'s keyword argument."""

    name: str
    help: str
    type: type = bool
    default: Any = False

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Command:
    """One command.

    ``run``/``show``: ``"module:function"``, imported when the command runs. ``paths``: its positional paths,
    the first one the source whose run's ``config.yaml`` gives the defaults (``config="from_source"``).
    ``config``: ``required`` (``-c``), ``from_source``, ``optional``, ``overrides`` (``KEY=VALUE`` but no ``-c``) or
    ``none`` (neither).
    ``device``: the preamble runs (device prepared, seeded) and ``run`` gets the device; ``job``: what the
    precision is announced for. ``ranks``: under torchrun, ``all`` processes run it, ``main`` (rank 0 alone)
    or ``none`` (refused). ``preset``: overrides applied before the user's.
    """

    name: str
    help: str
    run: str
    show: str
    paths: tuple[PathArg, ...] = ()
    flags: tuple[Flag, ...] = ()
    config: Literal["required", "from_source", "optional", "overrides", "none"] = "optional"
    device: bool = False
    job: str | None = None
    ranks: Literal["all", "main", "none"] = "main"
    preset: tuple[str, ...] = ()

    def function(self, which: Literal["run", "show"]) -> Callable:
        module, _, name = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), name)


def split_items(command: Command, items: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Command-line items -> ``({path name: value}, overrides)``. ``KEY=VALUE`` items are overrides; the others
    fill the command's paths in order, skipping a path whose config key an override already gives. A path
    missing, one too many, or a ``KEY=VALUE`` where no override is taken: one line naming it."""
    items = list(items)
    overrides = [i for i in items if _OVERRIDE.match(i) and not Path(i).exists()]
    positional = [i for i in items if i not in overrides]
    if overrides and command.config == "none":
        expected = " ".join(p.metavar for p in command.paths)
        raise BadInput(f"{command.name}: {overrides[0]} is KEY=VALUE where a path is expected ({expected})")
    given_keys = {current_key(o.split("=", 1)[0]) for o in overrides}
    paths: dict[str, Any] = {}
    for path in command.paths:
        if path.key is not None and path.key in given_keys:
            continue
        if path.many and positional:
            paths[path.name], positional = positional, []
        elif positional and not path.many:
            paths[path.name] = positional.pop(0)
    if positional:
        raise BadInput(f"{command.name}: unexpected argument {positional[0]!r} ({usage(command)})")
    check_required(command, paths, overrides)
    return paths, overrides


def check_required(command: Command, paths: dict, overrides: list[str]) -> None:
    """Every required path given, as an argument or by its config key; else one line naming it."""
    given_keys = {current_key(o.split("=", 1)[0]) for o in overrides}
    for path in command.paths:
        if path.required and path.name not in paths and path.key not in given_keys:
            got = f"; {overrides[0]} is KEY=VALUE, not a path" if overrides else ""
            raise BadInput(f"{command.name}: give {path.metavar} ({path.help}){got}")


def usage(command: Command) -> str:
    """``ssl-pretrain NAME [-c CONFIG] [--FLAG ...] PATHS [KEY=VALUE ...]``."""
    parts = ["ssl-pretrain", command.name]
    if command.config not in ("none", "overrides"):
        parts.append("-c CONFIG" if command.config == "required" else "[-c CONFIG]")
    parts += [f"[{f.option}]" if f.type is bool else f"[{f.option} {f.name.upper()}]" for f in command.flags]
    parts += [f"{p.metavar} [{p.metavar} ...]" if p.many else p.metavar for p in command.paths]
    if command.config != "none":
        parts.append("[KEY=VALUE ...]")
    return " ".join(parts)


def as_text(value: Any) -> str:
    """A path argument (a path, a run, a list of them) as the text of its config value."""
    if isinstance(value, (list, tuple)):
        return yaml.safe_dump([as_text(v) for v in value], default_flow_style=True).strip()
    return str(getattr(value, "directory", value))


def override_strings(overrides: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """``key=value`` strings from a list of them or a mapping of dotted keys to values."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={_yaml(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise BadInput(f"overrides: give a list of key=value strings or a mapping, not the string {overrides!r}")
    return list(overrides)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def raw_config(config: Any) -> dict:
    """A config as a raw nested mapping: a YAML path, a mapping (nested, or dotted keys), a Config, or None."""
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, Mapping):
        nested = {k: v for k, v in config.items() if not (isinstance(k, str) and "." in k)}
        dotted = [f"{k}={_yaml(v)}" for k, v in config.items() if isinstance(k, str) and "." in k]
        return apply_overrides(nested, dotted)
    return {} if config is None else read_yaml(config)
