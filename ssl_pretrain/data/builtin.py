"""The built-in datasets: Fashion-MNIST, CIFAR-10, STL-10 (in memory) and image folders (files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..errors import BadInput
from .idx import read_idx
from .image_folder import IMAGE_FOLDER
from .sources import TensorImages
from .spec import DatasetSpec, Split, default_root, existing_root

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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
    """From ``data.root``, else ``$SSL_PRETRAIN_DATA/fashion_mnist`` when that variable is set, else Debian's
    ``dataset-fashion-mnist``, else an earlier download in ``~/.cache/ssl_pretrain/fashion_mnist``, else a
    torchvision download (to the cache)."""
    root = existing_root(cfg)
    # An explicit $SSL_PRETRAIN_DATA comes before the system's copy; the default cache after it.
    chosen = default_root("fashion_mnist") if os.environ.get("SSL_PRETRAIN_DATA") else None
    cache = None if chosen else default_root("fashion_mnist")
    searched = [p for p in (root, chosen, DEBIAN_FASHION_MNIST, cache) if p is not None]
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

    root = existing_root(cfg) or default_root(cfg.name)
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


FASHION_MNIST = DatasetSpec(load_fashion_mnist, 1, 28, [0.2860], [0.3530], description="Fashion-MNIST, 60k + 10k")
CIFAR10 = DatasetSpec(
    _torchvision_set, 3, 32, [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616], description="CIFAR-10, 50k + 10k"
)
STL10 = DatasetSpec(
    _torchvision_set,
    3,
    96,
    [0.4467, 0.4398, 0.4066],
    [0.2603, 0.2566, 0.2713],
    description="STL-10: pretrains on the 100k unlabeled split",
)


def open_shards(cfg: DataConfig, split: Split):
    """``data.name=shards``: the pretraining split streams; labeled splits are decoded into memory. Without
    ``data.test_root`` the test split is the samples whose key hashes below ``data.test_fraction`` (with
    ``data.labels``, of its keys: :mod:`.shard_labels`)."""
    from .labels import key_labels, read_label_file
    from .shard_labels import labelled_shards, shard_holdout
    from .shard_stream import ShardSource
    from .shards import load_split, shard_paths

    size, channels = cfg.image_size or 32, cfg.channels or 3
    if split == "test" and cfg.test_root is not None:
        return load_split(shard_paths(cfg.test_root, "data.test_root"), size, channels, f"shards {cfg.test_root}")
    paths = shard_paths(cfg.root)
    given = None if cfg.labels is None else read_label_file(cfg.labels)
    held = shard_holdout(cfg, paths, given)
    description = f"shards {cfg.root}"
    if split == "pretrain":
        labels = None if given is None else key_labels(given)
        skipped = None if cfg.pretrain_on_test else held
        return ShardSource(paths, size, channels, skipped, held is not None, description, labels)
    if given is not None:
        return labelled_shards(cfg, paths, split, held, size, channels, given)
    if held is None:
        return load_split(paths, size, channels, description)
    if split == "test":
        return load_split(paths, size, channels, f"{description}, held-out samples", keep=held)
    return load_split(paths, size, channels, f"{description}, without held-out", held_out=held)


def shard_stats(cfg: DataConfig, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel statistics of up to 256 training images of the first shard (0.5 / 0.25 without one): the
    samples held out for testing are not decoded."""
    from .shard_labels import shard_holdout
    from .shards import decode_sample, shard_paths, split_samples

    if cfg.root is None:
        return [0.5] * channels, [0.25] * channels
    paths = shard_paths(cfg.root)
    held = None if cfg.pretrain_on_test else shard_holdout(cfg, paths)
    arrays = []
    for sample in split_samples(paths[0], None, held):
        array = decode_sample(sample, 32, channels)
        if array is not None:
            arrays.append(array)
        if len(arrays) >= 256:
            break
    if not arrays:
        return [0.5] * channels, [0.25] * channels
    pixels = np.stack(arrays).astype(np.float64) / 255.0
    std = np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3)
    return [round(float(m), 4) for m in pixels.mean(axis=(0, 2, 3))], [round(float(v), 4) for v in std]


SHARDS = DatasetSpec(
    open_shards,
    3,
    32,
    [0.5] * 3,
    [0.25] * 3,
    stats=shard_stats,
    description="WebDataset tar shards, streamed",
    reads_labels=True,
)

__all__ = ["CIFAR10", "FASHION_MNIST", "IMAGE_FOLDER", "SHARDS", "STL10"]
