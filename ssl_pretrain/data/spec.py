"""Datasets by name: a :class:`DatasetSpec` says how to open each split and what the images are.

Splits: ``pretrain`` (images used without labels; ``data.limit`` applies), ``train`` and ``test``
(labeled, for probes and fine-tuning). ``data.name`` picks a spec from the dataset registry
(:data:`ssl_pretrain.registry.DATASETS`); adding a dataset is one module with a spec plus one
registration (``register_dataset`` or an entry point of the group ``ssl_pretrain.datasets``).

A split is any object with ``__len__``, ``__getitems__(indices) -> Batch`` (uint8 images), ``subset``,
``labels`` ``(N,)`` (-1 where unknown), ``has_labels``, ``origin``, ``without_labels`` and ``description``:
:class:`~.sources.TensorImages` (images in memory) and :class:`~.sources.FolderImages` (files) are ready-made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..config import DataConfig
from ..errors import BadInput
from ..registry import DATASETS

Split = Literal["pretrain", "train", "test", "pool"]  # pool: every training image (data.labels)


@dataclass
class DataInfo:
    """What the device pipeline and the encoder need to know about the images."""

    channels: int
    image_size: int
    mean: list[float]
    std: list[float]

    @classmethod
    def from_spec(cls, spec, image_size: int | None = None) -> DataInfo:
        """What an encoder (its :class:`~ssl_pretrain.encoders.EncoderSpec`) expects, at its own input size or
        at ``image_size``."""
        return cls(spec.in_channels, image_size or spec.image_size, list(spec.mean), list(spec.std))


@dataclass
class DatasetSpec:
    """One registered dataset.

    Attributes:
        open: ``open(cfg, split) -> dataset`` for ``split`` in ``pretrain``, ``train``, ``test``; raise
            :class:`~ssl_pretrain.errors.BadInput` naming the key (``data.root: ...``) for unusable input.
        channels, image_size: the images as stored (``data.channels`` / ``data.image_size`` convert them).
        mean, std: per-channel statistics of the training images in ``[0, 1]`` units, for normalisation.
        stats: optional ``stats(cfg, channels) -> (mean, std)`` for datasets whose statistics depend on the
            data found (image folders); it replaces ``mean`` and ``std``.
        description: one line for listings and errors.
        reads_labels: ``open`` reads ``data.labels`` itself and opens the ``pool`` split (every training image,
            -1 where unlabeled; shards, which label samples as they are read); others are labelled for it.
    """

    open: Callable[[DataConfig, Split], Any]
    channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    stats: Callable[[DataConfig, int], tuple[list[float], list[float]]] | None = None
    description: str = ""
    reads_labels: bool = False


def dataset_spec(name: str) -> DatasetSpec:
    """The registered spec of ``data.name``."""
    if name not in DATASETS:
        raise BadInput(f"data.name: unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
    return DATASETS[name]


def default_root(name: str) -> Path:
    return Path(os.environ.get("SSL_PRETRAIN_DATA", Path.home() / ".cache" / "ssl_pretrain")) / name


def existing_root(cfg: DataConfig) -> Path | None:
    if cfg.root is None:
        return None
    if isinstance(cfg.root, list):
        raise BadInput(f"data.root: a list of paths is for data.name=shards; {cfg.name} takes one folder")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise BadInput(f"data.root: {root} does not exist")
    return root


def open_split(cfg: DataConfig, split: Split):
    """The dataset of one split, with ``data.limit`` applied to ``pretrain`` (and ``data.development``: the
    last N training images are the test split, the dataset's own test split is never opened). With
    ``data.labels``, ``train`` is the images the file labels and ``pool`` every training image (the
    unlabeled ones with label -1)."""
    if cfg.development is not None and cfg.pretrain_on_test:
        raise BadInput(
            "data.pretrain_on_test: cannot be combined with data.development, whose test split is training images "
            "that pretraining must leave out; set one of them"
        )
    spec = dataset_spec(cfg.name)
    kind = "train" if split == "pool" and not spec.reads_labels else split
    if cfg.development is None:
        ds = spec.open(cfg, kind)
    else:
        ds = development_split(spec.open(cfg, "pretrain" if kind == "pretrain" else "train"), kind, cfg.development)
    if split == "pretrain" and cfg.limit is not None and getattr(ds, "streaming", False):
        raise BadInput("data.limit: a streamed dataset cannot be cut to its first N images; list fewer shards")
    if split == "pretrain" and cfg.limit is not None and cfg.limit < len(ds):
        ds = ds.subset(torch.arange(cfg.limit))
    if cfg.labels is not None and split in ("train", "pool") and not spec.reads_labels:
        ds = _partly_labelled(cfg, ds, split)
    return ds


def _partly_labelled(cfg: DataConfig, ds, split: Split):
    """``data.labels``: the training images labelled by the file (an image folder labels itself, before its
    test files are held out); ``train`` keeps the labeled ones, ``pool`` every one."""
    from .labels import indexed_labels, read_label_file

    if cfg.name != "image_folder":
        ds = ds.with_labels(indexed_labels(read_label_file(cfg.labels), ds.labels))
    if split == "pool":
        return ds
    labeled = (ds.labels >= 0).nonzero().flatten()
    if len(labeled) == 0:
        raise BadInput(
            f"data.labels: none of the images {cfg.labels} names is in the training split ({ds.description})"
        )
    part = ds.subset(labeled)
    part.description = f"{ds.description}, the {len(part)} labelled by {cfg.labels}"
    return part


def development_split(train, split: Split, held: int):
    """``data.development=N``: a development split cut from the training images, for decisions about a recipe
    or the protocol that must not read the test set. The last ``held`` training images are its test split;
    pretraining and the labeled training split are the images before them."""
    if getattr(train, "streaming", False):
        raise BadInput("data.development: a streamed dataset cannot be cut by position; write separate shards")
    if not 0 < held < len(train):
        raise BadInput(f"data.development: {held} must be below the {len(train)} training images")
    first = len(train) - held
    part = train.subset(torch.arange(first, len(train)) if split == "test" else torch.arange(first))
    which = (
        f"images {first}..{len(train) - 1}, the development test split"
        if split == "test"
        else f"its first {first} images"
    )
    part.description = f"{train.description}, {which} (data.development={held})"
    return part


def data_info(cfg: DataConfig) -> DataInfo:
    """Channels, size and normalisation the pipeline produces for this config."""
    spec = dataset_spec(cfg.name)
    channels = cfg.channels or spec.channels
    size = cfg.image_size or spec.image_size
    if spec.stats is not None:
        mean, std = spec.stats(cfg, channels)
    else:
        mean, std = list(spec.mean), list(spec.std)
        if channels != spec.channels:
            mean, std = _convert_stats(mean, std, channels)
    return DataInfo(channels, size, list(mean), list(std))


def _convert_stats(mean: list[float], std: list[float], channels: int) -> tuple[list[float], list[float]]:
    if channels == 3:
        return mean * 3, std * 3
    weights = [0.299, 0.587, 0.114]
    return [sum(w * m for w, m in zip(weights, mean, strict=True))], [
        sum(w * s for w, s in zip(weights, std, strict=True))
    ]
