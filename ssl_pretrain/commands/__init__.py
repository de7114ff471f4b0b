"""The commands: one table (:mod:`.table`) that the command line and the Python API both read, the rows'
shape (:mod:`.command`), running one (:mod:`.running`), and the commands that are not evaluations
(pretrain, export, shard, demo)."""

from .command import Command, Flag, PathArg
from .table import COMMANDS, ENCODER, register_command

__all__ = ["COMMANDS", "ENCODER", "Command", "Flag", "PathArg", "register_command"]
