"""``data.labels`` for shards (``data.name=shards``): a partly labelled collection of tar shards.

The file's rows are ``key,label``, a sample's WebDataset key (``class_0/img_12`` for the members
``class_0/img_12.png`` and ``.cls``) and its label; a ``cls`` member is then ignored. Pretraining streams every
sample; the ``train`` split is the labeled samples, decoded into memory; ``pool`` (FixMatch's unlabeled images)
every training sample, decoded into memory, -1 where the file has no row. Without ``data.test_root`` the test
split is the labeled samples whose key hashes below ``data.test_fraction`` (:class:`~.holdout.KeyHoldout`),
skipped by pretraining: decided by the labels file and the keys alone, before any image is read.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from ..errors import BadInput
from .holdout import KeyHoldout
from .labels import LabelFile, key_labels, read_label_file
from .shards import load_split, scan
from .sources import TensorImages


def shard_holdout(cfg: DataConfig, paths: list[Path], given: LabelFile | None = None) -> KeyHoldout | None:
    """The samples of ``data.root``'s shards held out for testing: none with ``data.test_root``; with
    ``data.labels`` the labeled keys hashing below ``data.test_fraction``; else every key below it when the
    shards carry labels (``cls``). A row of ``data.labels`` naming a key no shard holds is bad input naming the
    row (the tar headers are read, no image). ``given``: the file already read."""
    if cfg.labels is not None:
        given = given or read_label_file(cfg.labels)
        _check_keys(given, paths)
        return None if cfg.test_root is not None else KeyHoldout(cfg.test_fraction, frozenset(given.keys))
    if cfg.test_root is not None:
        return None
    return KeyHoldout(cfg.test_fraction) if scan(paths[0]).labeled else None


def labelled_shards(
    cfg: DataConfig,
    paths: list[Path],
    split: str,
    held: KeyHoldout | None,
    size: int,
    channels: int,
    given: LabelFile,
) -> TensorImages:
    """The ``train``, ``pool`` or ``test`` split of shards labelled by ``given`` (``data.labels``, read; ``test``
    only when it is held out of ``data.root``; ``held``: :func:`shard_holdout`'s, which checked the file's keys)."""
    label = key_labels(given)
    description = f"shards {cfg.root}"
    if split == "test":
        _check_held(cfg, given, held, test=True)
        return load_split(paths, size, channels, f"{description}, held-out labelled samples", keep=held, labels=label)
    _check_held(cfg, given, held, test=False)
    if split == "pool":
        return load_split(paths, size, channels, f"{description}, every sample, labelled by {cfg.labels} or not",
                          held_out=held, labels=label)  # fmt: skip
    return load_split(paths, size, channels, f"{description}, the samples labelled by {cfg.labels}",
                      held_out=held, keep=label.__contains__, labels=label)  # fmt: skip


def _check_keys(given: LabelFile, paths: list[Path]) -> None:
    """Bad input naming the first row whose key is not a sample with an image in ``paths`` (headers only)."""
    found: set[str] = set()
    for path in paths:
        found.update(scan(path).keys)
    for number, key in enumerate(given.keys, start=2):  # row 1 is the header
        if key not in found:
            raise BadInput(f"data.labels: {given.path} row {number}: {key} is not a sample key of the shards")


def _check_held(cfg: DataConfig, given: LabelFile, held: KeyHoldout | None, *, test: bool) -> None:
    """Bad input when holding out leaves the test split (``test``) or the labeled training split empty."""
    if held is None:
        return
    count = sum(1 for key in given.keys if held(key))
    if (count == 0) if test else (count == len(given.keys)):
        which = "test" if test else "labelled training"
        raise BadInput(
            f"data.test_fraction: {cfg.test_fraction:g} leaves no {which} sample among the {len(given.keys)} keys "
            f"of {given.path}; change it or set data.test_root"
        )
