"""Running a command, the same from the command line and the API: its config built (the source's run gives
the defaults, then ``-c``/``config``, then the overrides), the preamble (device, seed, precision) done once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..build import start
from ..config import Config, apply_overrides, build_config, current_key, merged
from ..errors import BadInput
from ..evaluation.shared.encoder_source import defaults_for, saved_run_config
from .command import Command, as_text, raw_config


def command_config(command: Command, config: Any, overrides: list[str], paths: dict, strict: bool) -> Config:
    """The validated config of ``command``: the run of its source (``from_source``: the first path, given
    positionally or by its key; a path that does not exist is refused), ``config`` over it, then the row's
    ``preset``, the paths' keys and ``overrides``. ``strict`` (the command line): a command that needs a config
    and has none is refused."""
    keyed = [f"{p.key}={as_text(paths[p.name])}" for p in command.paths if p.key and p.name in paths]
    given, overrides = overrides, [*command.preset, *keyed, *overrides]
    base = None
    if command.config == "from_source":
        source = _source(command, paths, overrides)
        if source is not None and not Path(source).expanduser().exists():
            raise BadInput(f"{command.paths[0].key or command.name}: {source} does not exist")
        base = defaults_for(saved_run_config(source), overrides) if source else None
        if strict and base is None and config is None:
            raise BadInput(f"{command.name}: {_not_in_a_run(command.paths[0], source, given)}")
    elif strict and command.config == "required" and config is None:
        raise BadInput(f"{command.name}: -c CONFIG is required (e.g. -c configs/fashion_mnist/dae.yaml)")
    return build_config(apply_overrides(merged(base or {}, raw_config(config)), overrides))


def _not_in_a_run(first, source: str | None, overrides: list[str]) -> str:
    """Why a command that takes its defaults from its source's run has no config, and what to give."""
    if source is not None:
        return f"{source} is not inside a run directory (one with config.yaml); give a config (-c) naming the data"
    alternative = f", or {first.key}=PATH" if first.key else ""
    misplaced = f"; {overrides[0]} is KEY=VALUE, not a path" if overrides else ""
    return f"give {first.metavar} ({first.help}{alternative}) inside a run directory, or -c CONFIG{misplaced}"


def _source(command: Command, paths: dict, overrides: list[str]) -> str | None:
    """The first path's value (the first of several), from the arguments or from its key's override."""
    first = command.paths[0]
    value = paths.get(first.name)
    if value is None and first.key:
        given = [text for key, _, text in (o.partition("=") for o in overrides) if current_key(key) == first.key]
        value = yaml.safe_load(given[-1]) if given else None
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else as_text(value)


def invoke(command: Command, config: Config, paths: dict, flags: dict) -> Any:
    """``run(config, [device,] **keywords)``: the paths without a config key and the flags as keywords;
    with ``command.device``, the device prepared, the seed set and the precision of ``job`` announced first."""
    keywords = {p.name: _plain(paths[p.name]) for p in command.paths if p.key is None and p.name in paths}
    keywords.update(flags)
    run = command.function("run")
    if command.device:
        return run(config, start(config, command.job), **keywords)
    return run(config, **keywords)


def _plain(value: Any) -> Any:
    """A path argument as text (a list of them as a list of texts)."""
    if isinstance(value, (list, tuple)):
        return [as_text(v) for v in value]
    return as_text(value)
