"""Image folders (``data.name=image_folder``): every image file below ``data.root``, labels from sub-folders.

A labeled folder without ``data.test_root`` holds its test split back by file path (:mod:`.holdout`):
``test`` reads those files, ``train`` and ``pretrain`` the others, and the normalisation statistics are
computed without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import BadInput
from .decode import decode_image
from .holdout import RULE as HOLDOUT_RULE
from .holdout import digest_of, held_out_mask, relative_paths
from .labels import folder_labels, labels_digest, read_label_file
from .sources import FolderImages, scan_folder
from .spec import DatasetSpec, Split, data_info


def _root_key(cfg: DataConfig, split: Split) -> str:
    return "data.test_root" if split == "test" and cfg.test_root else "data.root"


def load_image_folder(cfg: DataConfig, split: Split, size: int, channels: int) -> FolderImages:
    """Every image file below ``data.root`` (or ``data.test_root`` for the test split), found by name: none
    is opened here."""
    if cfg.root is None:
        raise BadInput("data.root: image_folder needs data.root, a folder of images")
    key = _root_key(cfg, split)
    root = Path(cfg.test_root if key == "data.test_root" else cfg.root).expanduser()
    if not root.is_dir():
        raise BadInput(f"{key}: {root} is not a folder")
    files, labels, classes = scan_folder(root)
    if not files:
        raise BadInput(f"{key}: no image files in {root} (looked for .jpg, .png, .bmp, .webp, ... recursively)")
    return FolderImages(files, labels, classes, size, channels, f"image folder {root}", root)


def _check_readable(dataset: FolderImages, key: str) -> None:
    """Bad input unless one of the split's own files decodes (files of other splits are never opened)."""
    if not any(decode_image(f, 8, dataset.channels) is not None for f in dataset.files):
        raise BadInput(
            f"{key}: none of the {len(dataset)} image files of {dataset.description} could be read "
            f"(e.g. {dataset.files[0]})"
        )


def holds_out_test(cfg: DataConfig, dataset) -> bool:
    """An image folder with labels (its sub-folders, or ``data.labels``) and no ``data.test_root`` keeps its test
    split inside ``data.root``."""
    return cfg.name == "image_folder" and cfg.test_root is None and (dataset.has_labels or cfg.labels is not None)


def _without_held_out(cfg: DataConfig, split: Split, dataset: FolderImages) -> FolderImages:
    """The part of ``dataset`` that ``split`` reads: the held-out test files for ``test``; the others for
    ``train`` and for ``pretrain`` (unless ``data.pretrain_on_test``: transductive use)."""
    if not holds_out_test(cfg, dataset) or (split == "pretrain" and cfg.pretrain_on_test):
        return dataset
    held = _held_out(cfg, dataset)
    part = dataset.subset((held if split == "test" else ~held).nonzero().flatten())
    if len(part) == 0:
        raise BadInput(
            f"data.test_fraction: {cfg.test_fraction:g} leaves no {'test' if split == 'test' else 'training'} "
            f"image among the {len(dataset)} files of {dataset.root}; change it or set data.test_root"
        )
    which = "held-out test files" if split == "test" else "without the held-out test files"
    part.description = f"{dataset.description}, {which} (data.test_fraction={cfg.test_fraction:g}, by path)"
    return part


def _labelled_folder(cfg: DataConfig, split: Split) -> FolderImages:
    """Every image file of the split's root, labelled by ``data.labels`` when given (not by sub-folders)."""
    info = data_info(cfg)
    dataset = load_image_folder(cfg, split, info.image_size, info.channels)
    if cfg.labels is not None and _root_key(cfg, split) == "data.root":
        dataset = dataset.with_labels(*folder_labels(read_label_file(cfg.labels), dataset.files, dataset.root))
    return dataset


def _held_out(cfg: DataConfig, dataset: FolderImages):
    """``(N,)`` bool: the test files of a folder that holds them out by path (a partly labelled folder's are
    among its labeled files)."""
    held = held_out_mask(dataset.files, dataset.root, cfg.test_fraction)
    return held & (dataset.labels >= 0) if cfg.labels is not None else held


def open_image_folder(cfg: DataConfig, split: Split) -> FolderImages:
    part = _without_held_out(cfg, split, _labelled_folder(cfg, split))
    _check_readable(part, _root_key(cfg, split))
    return part


def folder_stats(cfg: DataConfig, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel statistics of the folder's training images (0.5 / 0.25 without a root)."""
    if cfg.root is None:
        return [0.5] * channels, [0.25] * channels
    held_out = None if cfg.test_root is not None or cfg.pretrain_on_test else cfg.test_fraction
    return _folder_stats(Path(cfg.root).expanduser(), channels, held_out)


def _folder_stats(
    root: Path, channels: int, held_out: float | None, max_images: int = 256
) -> tuple[list[float], list[float]]:
    """Per-channel mean/std from up to ``max_images`` evenly spread readable images (0.5/0.25 if none),
    leaving out the files held out for testing at fraction ``held_out`` when the folder has classes."""
    if not root.is_dir():
        return [0.5] * channels, [0.25] * channels
    files, labels, _ = scan_folder(root)
    if held_out is not None and files and min(labels) >= 0:
        files = [f for f, held in zip(files, held_out_mask(files, root, held_out).tolist(), strict=True) if not held]
    step = max(1, len(files) // max_images)
    arrays = [a for a in (decode_image(f, 32, channels) for f in files[::step][:max_images]) if a is not None]
    if not arrays:
        return [0.5] * channels, [0.25] * channels
    pixels = np.stack(arrays).astype(np.float64) / 255.0
    mean = pixels.mean(axis=(0, 2, 3))
    std = np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


IMAGE_FOLDER = DatasetSpec(
    open_image_folder, 3, 32, [0.5] * 3, [0.25] * 3, stats=folder_stats, description="a folder of image files"
)


def split_record(cfg: DataConfig, pretrain_set) -> tuple[dict, list[str]]:
    """What pretraining read and which test images it kept out: ``data_split.json`` of the run directory,
    and the relative paths of the held-out test files (image folders without ``data.test_root``)."""
    record = {
        "dataset": cfg.name,
        "root": resolved_root(cfg.root),
        "pretrain_split": pretrain_set.description,
        "pretrain_images": len(pretrain_set),
        "test_split": "the dataset's own test split, never read by pretraining",
        "held_out_fraction": None,
        "pretrain_read_test": False,
        "development": cfg.development,
    }
    held: list[str] = []
    if getattr(pretrain_set, "streaming", False):
        return _stream_record(cfg, pretrain_set, record), held
    if cfg.name != "image_folder":
        return record, held
    if cfg.test_root is not None:
        record["test_split"] = f"data.test_root ({cfg.test_root}), never read by pretraining"
        return record, held
    everything = _labelled_folder(cfg, "train")
    if not holds_out_test(cfg, everything):
        record["test_split"] = "none: the folder has no class sub-folders, so nothing was held out"
        return record, held
    if cfg.labels is not None:
        record["labels_sha256"] = labels_digest(cfg.labels)
    mask = _held_out(cfg, everything)
    held = [p for p, h in zip(relative_paths(everything.files, everything.root), mask.tolist(), strict=True) if h]
    record["held_out_fraction"] = cfg.test_fraction
    record["held_out_files"] = len(held)
    record["held_out_sha256"] = digest_of(held)
    record["held_out_rule"] = HOLDOUT_RULE
    if cfg.pretrain_on_test:
        record["test_split"] = "held out by path, but read by pretraining too (data.pretrain_on_test=true)"
    else:
        record["test_split"] = "held out by path and skipped by pretraining"
    record["pretrain_read_test"] = cfg.pretrain_on_test
    return record, held


def resolved_root(root) -> str | list[str] | None:
    if root is None:
        return None
    if isinstance(root, list):
        return [str(Path(r).expanduser().resolve()) for r in root]
    return str(Path(root).expanduser().resolve())


def _stream_record(cfg: DataConfig, source, record: dict) -> dict:
    """The record of streamed shards: held-out samples are named by rule (key hash), not listed."""
    if cfg.test_root is not None:
        record["test_split"] = f"data.test_root ({cfg.test_root}), never read by pretraining"
    elif source.labeled:
        record["held_out_fraction"] = cfg.test_fraction
        record["held_out_rule"] = "SHA-256 of the sample key, as a number in [0, 1), below data.test_fraction" + (
            ", among the keys data.labels names" if cfg.labels is not None else ""
        )
        if cfg.labels is not None:
            record["labels_sha256"] = labels_digest(cfg.labels)
        record["pretrain_read_test"] = cfg.pretrain_on_test
        record["test_split"] = (
            "held out by key, but read by pretraining too (data.pretrain_on_test=true)"
            if cfg.pretrain_on_test
            else "held out by key and skipped by pretraining"
        )
    else:
        record["test_split"] = "none: the shards carry no labels, so nothing was held out"
    return record
