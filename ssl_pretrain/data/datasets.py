"""Open a configured dataset split as a uint8 source.

Splits: ``pretrain`` (images used without labels; ``data.limit`` applies; STL-10 uses its 100k
``unlabeled`` split), ``train`` and ``test`` (labeled, for probes). A labeled image folder without
``data.test_root`` holds its test split back by file path (:mod:`.holdout`): ``test`` reads those files,
``train`` and ``pretrain`` the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..config import DataConfig
from ..errors import BadInput
from .holdout import RULE as HOLDOUT_RULE
from .holdout import digest_of, held_out_mask, relative_paths
from .idx import read_idx
from .sources import FolderImages, TensorImages, decode_image, scan_folder

Split = Literal["pretrain", "train", "test"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# Per-channel statistics of the training splits, in [0, 1] units.
STATS = {
    "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "stl10": ([0.4467, 0.4398, 0.4066], [0.2603, 0.2566, 0.2713]),
}


@dataclass
class DataInfo:
    """What the device pipeline and the encoder need to know about the images."""

    channels: int
    image_size: int
    mean: list[float]
    std: list[float]

    @classmethod
    def from_spec(cls, spec: dict, image_size: int | None = None) -> DataInfo:
        """What an encoder (its ``spec``) expects, at its own input size or at ``image_size``."""
        return cls(spec["in_channels"], image_size or spec["image_size"], spec["mean"], spec["std"])


def default_root(name: str) -> Path:
    return Path(os.environ.get("SSL_PRETRAIN_DATA", Path.home() / ".cache" / "ssl_pretrain")) / name


def _existing_root(cfg: DataConfig) -> Path | None:
    if cfg.root is None:
        return None
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise BadInput(f"data.root: {root} does not exist")
    return root


def _fashion_mnist_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split != "test" else "t10k"
    for base in (folder, folder / "FashionMNIST" / "raw"):
        found = []
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            candidates = [base / f"{prefix}-{kind}{ext}" for ext in ("", ".gz")]
            found.append(next((c for c in candidates if c.is_file()), None))
        if all(found):
            return found[0], found[1]
    return None


def load_fashion_mnist(cfg: DataConfig, split: Split) -> TensorImages:
    """From ``data.root``, else Debian's ``dataset-fashion-mnist``, else a torchvision download."""
    root = _existing_root(cfg)
    searched = [p for p in (root, DEBIAN_FASHION_MNIST) if p is not None]
    files = next((f for f in (_fashion_mnist_files(p, split) for p in searched) if f), None)
    if files is None and cfg.download:
        target = root or default_root("fashion_mnist")
        try:
            import torchvision

            torchvision.datasets.FashionMNIST(str(target), train=split != "test", download=True)
        except Exception as err:  # noqa: BLE001 - any download failure is reported as bad input
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise BadInput(
                f"data.root: Fashion-MNIST not found in {', '.join(map(str, searched))} and the download to "
                f"{target} failed ({reason}); install it with 'apt-get install dataset-fashion-mnist' "
                f"or set data.root to a folder with its IDX files"
            ) from None
        files = _fashion_mnist_files(target, split)
    if files is None:
        raise BadInput(f"data.root: Fashion-MNIST IDX files not found in {', '.join(map(str, searched))}")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or len(images) != len(labels):
        raise BadInput(f"{files[0]} and {files[1]} do not form an image/label pair")
    tensor = torch.from_numpy(images.copy()).unsqueeze(1)
    return TensorImages(tensor, torch.from_numpy(labels.astype(np.int64)), f"Fashion-MNIST {split} ({files[0].parent})")


def _torchvision_set(cfg: DataConfig, split: Split) -> TensorImages:
    import torchvision

    root = _existing_root(cfg) or default_root(cfg.name)
    try:
        if cfg.name == "cifar10":
            ds = torchvision.datasets.CIFAR10(str(root), train=split != "test", download=cfg.download)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            labels = torch.as_tensor(ds.targets, dtype=torch.long)
        else:
            stl_split = {"pretrain": "unlabeled", "train": "train", "test": "test"}[split]
            ds = torchvision.datasets.STL10(str(root), split=stl_split, download=cfg.download)
            images = torch.from_numpy(ds.data)
            labels = torch.as_tensor(ds.labels, dtype=torch.long)
    except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError/URLError/OSError variously
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadInput(f"data.root: cannot open {cfg.name} in {root}: {reason}") from None
    return TensorImages(images, labels, f"{cfg.name} {split} ({root})")


def load_image_folder(cfg: DataConfig, split: Split, size: int, channels: int) -> FolderImages:
    """Every image below ``data.root`` (or ``data.test_root`` for the test split)."""
    if cfg.root is None:
        raise BadInput("data.root: image_folder needs data.root, a folder of images")
    root = Path(cfg.test_root if split == "test" and cfg.test_root else cfg.root).expanduser()
    key = "data.test_root" if split == "test" and cfg.test_root else "data.root"
    if not root.is_dir():
        raise BadInput(f"{key}: {root} is not a folder")
    files, labels, classes = scan_folder(root)
    if not files:
        raise BadInput(f"{key}: no image files in {root} (looked for .jpg, .png, .bmp, .webp, ... recursively)")
    if not any(decode_image(f, 8, channels) is not None for f in files):
        raise BadInput(f"{key}: none of the {len(files)} image files in {root} could be read (e.g. {files[0]})")
    return FolderImages(files, labels, classes, size, channels, f"image folder {root}", root)


def holds_out_test(cfg: DataConfig, dataset) -> bool:
    """An image folder with labels and no ``data.test_root`` keeps its test split inside ``data.root``."""
    return cfg.name == "image_folder" and cfg.test_root is None and dataset.has_labels


def _without_held_out(cfg: DataConfig, split: Split, dataset: FolderImages) -> FolderImages:
    """The part of ``dataset`` that ``split`` reads: the held-out test files for ``test``; the others for
    ``train`` and for ``pretrain`` (unless ``data.pretrain_on_test``: transductive use)."""
    if not holds_out_test(cfg, dataset) or (split == "pretrain" and cfg.pretrain_on_test):
        return dataset
    held = held_out_mask(dataset.files, dataset.root, cfg.test_fraction)
    part = dataset.subset((held if split == "test" else ~held).nonzero().flatten())
    if len(part) == 0:
        raise BadInput(
            f"data.test_fraction: {cfg.test_fraction:g} leaves no {'test' if split == 'test' else 'training'} "
            f"image among the {len(dataset)} files of {dataset.root}; change it or set data.test_root"
        )
    which = "held-out test files" if split == "test" else "without the held-out test files"
    part.description = f"{dataset.description}, {which} (data.test_fraction={cfg.test_fraction:g}, by path)"
    return part


def open_split(cfg: DataConfig, split: Split):
    """The dataset of one split, with ``data.limit`` applied to ``pretrain``."""
    if cfg.name == "fashion_mnist":
        ds = load_fashion_mnist(cfg, split)
    elif cfg.name in ("cifar10", "stl10"):
        ds = _torchvision_set(cfg, split)
    else:
        info = data_info(cfg)
        ds = _without_held_out(cfg, split, load_image_folder(cfg, split, info.image_size, info.channels))
    if split == "pretrain" and cfg.limit is not None and cfg.limit < len(ds):
        ds = ds.subset(torch.arange(cfg.limit))
    return ds


def native_format(name: str) -> tuple[int, int]:
    """(channels, size) of the images as stored."""
    return {"fashion_mnist": (1, 28), "cifar10": (3, 32), "stl10": (3, 96), "image_folder": (3, 32)}[name]


def data_info(cfg: DataConfig) -> DataInfo:
    """Channels, size and normalisation the pipeline produces for this config."""
    native_channels, native_size = native_format(cfg.name)
    channels = cfg.channels or native_channels
    size = cfg.image_size or native_size
    mean, std = STATS.get(cfg.name, ([0.5] * native_channels, [0.25] * native_channels))
    if cfg.name == "image_folder" and cfg.root is not None:
        held_out = None if cfg.test_root is not None or cfg.pretrain_on_test else cfg.test_fraction
        mean, std = _folder_stats(Path(cfg.root).expanduser(), channels, held_out)
        native_channels = channels
    if channels != native_channels:
        mean, std = _convert_stats(mean, std, channels)
    return DataInfo(channels, size, list(mean), list(std))


def _convert_stats(mean: list[float], std: list[float], channels: int) -> tuple[list[float], list[float]]:
    if channels == 3:
        return mean * 3, std * 3
    weights = [0.299, 0.587, 0.114]
    return [sum(w * m for w, m in zip(weights, mean, strict=True))], [
        sum(w * s for w, s in zip(weights, std, strict=True))
    ]


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


def split_record(cfg: DataConfig, pretrain_set) -> tuple[dict, list[str]]:
    """What pretraining read and which test images it kept out: ``data_split.json`` of the run directory,
    and the relative paths of the held-out test files (image folders without ``data.test_root``)."""
    record = {
        "dataset": cfg.name,
        "root": str(Path(cfg.root).expanduser().resolve()) if cfg.root else None,
        "pretrain_split": pretrain_set.description,
        "pretrain_images": len(pretrain_set),
        "test_split": "the dataset's own test split, never read by pretraining",
        "held_out_fraction": None,
        "pretrain_read_test": False,
    }
    held: list[str] = []
    if cfg.name != "image_folder":
        return record, held
    if cfg.test_root is not None:
        record["test_split"] = f"data.test_root ({cfg.test_root}), never read by pretraining"
        return record, held
    info = data_info(cfg)
    everything = load_image_folder(cfg, "train", info.image_size, info.channels)
    if not everything.has_labels:
        record["test_split"] = "none: the folder has no class sub-folders, so nothing was held out"
        return record, held
    mask = held_out_mask(everything.files, everything.root, cfg.test_fraction)
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
