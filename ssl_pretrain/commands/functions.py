"""A command row as a Python function, ``ssl.<name>(source, overrides, *, config=None, ...)``: generated from
the row, so that the API and the command line cannot drift apart."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..errors import BadInput
from .command import Command, check_required, override_strings, usage
from .running import command_config, invoke

_P = inspect.Parameter


def signature_of(command: Command) -> inspect.Signature:
    """``(source=None, overrides=None, *, config=None, <other paths>=None, <flags>=default)``; a command with
    no path: ``(config=None, overrides=None, *, <flags>)``; ``overrides`` alone (``demo``) or no config at
    all (``shard``: every path positional)."""
    params: list[inspect.Parameter] = []
    paths = list(command.paths)
    if command.config == "none":
        params += [_P(p.name, _P.POSITIONAL_OR_KEYWORD) for p in paths]
        paths = []
    elif paths:
        params.append(_P(paths.pop(0).name, _P.POSITIONAL_OR_KEYWORD, default=None))
    elif command.config != "overrides":
        params.append(_P("config", _P.POSITIONAL_OR_KEYWORD, default=None))
    if command.config != "none":
        params.append(_P("overrides", _P.POSITIONAL_OR_KEYWORD, default=None))
    if command.config not in ("none", "overrides") and command.paths:
        params.append(_P("config", _P.KEYWORD_ONLY, default=None))
    params += [_P(p.name, _P.KEYWORD_ONLY, default=None) for p in paths]
    params += [_P(f.name, _P.KEYWORD_ONLY, default=f.default) for f in command.flags]
    return inspect.Signature(params)


def command_function(command: Command) -> Callable[..., Any]:
    """The API function of ``command``: what ``ssl-pretrain <name>`` does, its result returned, not printed."""
    signature = signature_of(command)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise BadInput(f"{command.name}: {err}") from None
        given = bound.arguments
        paths = {p.name: given[p.name] for p in command.paths if given.get(p.name) is not None}
        overrides = override_strings(given.get("overrides"))
        check_required(command, paths, overrides)
        config = command_config(command, given.get("config"), overrides, paths, strict=False)
        flags = {f.name: given.get(f.name, f.default) for f in command.flags}
        return invoke(command, config, paths, flags)

    call.__name__ = call.__qualname__ = command.name
    call.__signature__ = signature
    call.__doc__ = (
        f"{command.help[0].upper()}{command.help[1:]}: what ``{usage(command)}`` does, its result returned "
        f"(``{command.show.split(':')[1]}`` formats it as the command line prints it). "
        f"Paths: {', '.join(f'``{p.name}``: {p.help}' for p in command.paths) or 'none'}. "
        f"See ``{command.run}``."
    )
    return call
