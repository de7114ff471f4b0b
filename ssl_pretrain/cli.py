"""The ``ssl-pretrain`` command line, built from the command table (:mod:`ssl_pretrain.commands`): every row
is a sub-command, with its paths as positional arguments, ``-c CONFIG``, its flags and ``KEY=VALUE``
overrides in any order. Exit codes: 0 ok, 2 bad input (one line on stderr), 1 failure."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import COMMANDS, Command
from .commands.command import split_items, usage
from .commands.running import command_config, invoke
from .errors import BadInput


def _command_parser(sub, command: Command) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        command.name, help=command.help.replace("%", "%%"), usage=usage(command).replace("%", "%%"),
        description=command.help.replace("%", "%%"),
    )  # fmt: skip
    if command.config not in ("none", "overrides"):
        default = " (default: the config of the run the source is in)" if command.config == "from_source" else ""
        parser.add_argument("-c", "--config", help=f"YAML config file{default}")
    for flag in command.flags:
        if flag.type is bool:
            parser.add_argument(flag.option, dest=flag.name, action="store_true", help=flag.help)
        else:
            parser.add_argument(flag.option, dest=flag.name, type=flag.type, default=flag.default, help=flag.help)
    lines = [f"{p.metavar}: {p.help}" + (f" (or {p.key}=...)" if p.key else "") for p in command.paths]
    if command.config != "none":
        lines.append("KEY=VALUE: dotted overrides, e.g. trainer.max_steps=50")
    parser.add_argument("items", nargs="*", metavar="ARG", help="; ".join(lines).replace("%", "%%"))
    return parser


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="ssl-pretrain", description="Self-supervised pretraining of image encoders.")
    parser.add_argument("--version", action="version", version=f"ssl-pretrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    return parser, {name: _command_parser(sub, COMMANDS[name]) for name in COMMANDS}


def run(argv: list[str]) -> int:
    from .train.distributed import world_from_env

    parser, commands = _parsers()
    if not argv or argv[0] not in commands:
        parser.parse_args(argv)  # help, --version, or argparse's own error for an unknown command
    command = COMMANDS[argv[0]]
    args = commands[command.name].parse_intermixed_args(argv[1:])
    world = world_from_env()
    if world.distributed and command.ranks != "all":
        if command.ranks == "none":
            raise BadInput(
                f"{command.name}: runs on one process; start it without torchrun (ssl-pretrain {command.name})"
            )
        if not world.is_main:  # only pretraining is data-parallel: the others run whole on rank 0
            return 0
        print(
            f"note: {command.name} runs on one process (rank 0 of {world.size}); the other processes exit",
            file=sys.stderr,
        )
    paths, overrides = split_items(command, args.items)
    config = command_config(command, getattr(args, "config", None), overrides, paths, strict=True)
    result = invoke(command, config, paths, {flag.name: getattr(args, flag.name) for flag in command.flags})
    if world.is_main:
        print(command.function("show")(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .train.trainer import TrainingError

    try:
        return run(sys.argv[1:] if argv is None else argv)
    except BadInput as err:
        print(f"ssl-pretrain: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"ssl-pretrain: training stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ssl-pretrain: interrupted", file=sys.stderr)
        return 130
