"""``ssl-pretrain shard``: an image folder as WebDataset tar shards, labels from its sub-folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..data.shards import write_shards


@dataclass
class Shards:
    """The shards written, the class names, and the ``data.root`` that reads them back."""

    paths: list[str]
    classes: list[str]
    root: str


def run_shard(config: Config, source: str, pattern: str, per_shard: int = 1000) -> Shards:
    """Write ``source`` as shards named by ``pattern`` (printf-style, e.g. ``shards/train-%06d.tar``)."""
    paths, classes = write_shards(Path(source).expanduser(), pattern, per_shard)
    last = len(paths) - 1
    root = pattern.replace("%06d", f"{{000000..{last:06d}}}") if "%06d" in pattern else pattern
    return Shards([str(p) for p in paths], list(classes), root)


def format_shards(shards: Shards) -> str:
    first, last = shards.paths[0], shards.paths[-1]
    return (
        f"{len(shards.paths)} shard(s) written ({first} .. {last}); classes: {', '.join(shards.classes) or 'none'}\n"
        f"pretrain on them with: data.name=shards data.root='{shards.root}'"
    )
