"""A test split fixed by file path, for labeled image folders without a separate ``data.test_root``.

A file is held out for testing when the SHA-256 of its path relative to ``data.root``, read as a number in
[0, 1), is below ``data.test_fraction``. The rule needs no stored list and no seed, so

- a file's split never changes when images are added or removed, or when an evaluation runs with another
  seed: pretraining that skipped the held-out files never saw any later probe's test image;
- every class gives about ``test_fraction`` of its files (stratified in expectation, class by class);
- the held-out files at a smaller fraction lie inside those at a larger fraction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

RULE = "SHA-256 of the path relative to data.root, as a number in [0, 1), below data.test_fraction"


def hash_position(relative_path: str) -> float:
    """Where ``relative_path`` (POSIX form) falls in [0, 1), uniformly spread and stable."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class KeyHoldout:
    """The test samples of shards without ``data.test_root``: those whose key hashes below ``fraction``; with
    ``among`` (the keys ``data.labels`` names), only those. Called with a sample key."""

    fraction: float
    among: frozenset[str] | None = None

    def __call__(self, key: str) -> bool:
        return (self.among is None or key in self.among) and hash_position(key) < self.fraction


def relative_paths(files: list[Path], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def held_out_mask(files: list[Path], root: Path, fraction: float) -> torch.Tensor:
    """``(N,)`` bool: which of ``files`` (below ``root``) belong to the held-out test split."""
    return torch.tensor([hash_position(p) < fraction for p in relative_paths(files, root)], dtype=torch.bool)


def digest_of(paths: list[str]) -> str:
    """SHA-256 of the sorted relative paths, one per line: names a set of files in one line."""
    return hashlib.sha256("\n".join(sorted(paths)).encode("utf-8")).hexdigest()
