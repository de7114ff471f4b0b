"""Datasets that hand out whole uint8 batches: ``dataset.__getitems__(indices) -> Batch``.

Nothing random happens here: decoding, resizing to a fixed size and centre-cropping are
deterministic; every random augmentation runs later on the device, batched.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from .decode import decode_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class Batch(NamedTuple):
    """``images``: ``(B, C, H, W)`` uint8; ``labels``: ``(B,)`` int64, -1 where unknown;
    ``indices``: ``(B,)`` int64 positions in the dataset; ``skipped``: paths of files that could
    not be decoded (dropped from the batch); ``encoded``: ``(name, JPEG bytes as a 1-D uint8 tensor)``
    pairs left for the training device to decode (``data.decode=gpu``), whose labels and indices follow
    those of ``images`` (:func:`~.loader.decode_on_device` makes them images)."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list
    encoded: tuple = ()


class TensorImages(Dataset):
    """Images already in memory as a uint8 tensor ``(N, C, H, W)``, with optional labels ``(N,)``; they may
    live on the training device (:meth:`to`), where batches are then cut without a copy from the host.

    ``origin``: ``(N,)`` positions of the images in the split they were cut from (subsets compose them),
    so two subsets of one split can be told apart or excluded from each other.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor | None, description: str, origin: torch.Tensor | None = None
    ):
        self.images = images
        self.labels = labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)
        self.description = description
        self.channels = images.shape[1]
        self.image_size = images.shape[-1]
        self.origin = origin if origin is not None else torch.arange(len(images))

    in_memory = True

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.images.device.type == "cpu":
            return Batch(self.images[idx], self.labels[idx], idx, [])
        # Images on a GPU: the index goes over from pinned memory, without the host waiting for the device.
        on_device = idx.pin_memory().to(self.images.device, non_blocking=True)
        return Batch(self.images[on_device], self.labels[idx], idx, [])

    def to(self, device: torch.device) -> TensorImages:
        """The images moved to ``device`` (labels and positions stay on the host, where the loader uses them)."""
        return TensorImages(self.images.to(device), self.labels, self.description, self.origin)

    def subset(self, indices: torch.Tensor) -> TensorImages:
        return TensorImages(self.images[indices], self.labels[indices], self.description, self.origin[indices])

    def without_labels(self) -> TensorImages:
        """The same images with every label unknown (-1): an unlabeled stream cannot leak labels."""
        return TensorImages(self.images, None, f"{self.description}, labels removed", self.origin)

    def with_labels(self, labels: torch.Tensor) -> TensorImages:
        """The same images with ``labels (N,)`` (-1: unlabeled), as ``data.labels`` gives them."""
        return TensorImages(self.images, labels, self.description, self.origin)

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).all())


class FolderImages(Dataset):
    """Every image file below ``root`` (recursive). Labels are the first-level sub-folders, if any."""

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        classes: list[str],
        size: int,
        channels: int,
        description: str,
        root: Path | None = None,
        origin: torch.Tensor | None = None,
    ):
        self.root = root
        self.origin = origin if origin is not None else torch.arange(len(files))
        self.files = files
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.classes = classes
        self.image_size = size
        self.channels = channels
        self.description = description

    def __len__(self) -> int:
        return len(self.files)

    def __getitems__(self, indices: list[int]) -> Batch:
        images, labels, kept, skipped = [], [], [], []
        for i in indices:
            array = decode_image(self.files[i], self.image_size, self.channels)
            if array is None:
                skipped.append(str(self.files[i]))
                continue
            images.append(torch.from_numpy(array.copy()))
            labels.append(self.labels[i])
            kept.append(i)
        if not images:
            empty = torch.zeros(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
            return Batch(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), skipped)
        return Batch(torch.stack(images), torch.stack(labels), torch.as_tensor(kept, dtype=torch.long), skipped)

    def subset(self, indices: torch.Tensor) -> FolderImages:
        idx = indices.tolist()
        return FolderImages(
            [self.files[i] for i in idx],
            self.labels[indices].tolist(),
            self.classes,
            self.image_size,
            self.channels,
            self.description,
            self.root,
            self.origin[indices],
        )

    def without_labels(self) -> FolderImages:
        """The same files with every label unknown (-1): an unlabeled stream cannot leak labels."""
        unknown = [-1] * len(self.files)
        description = f"{self.description}, labels removed"
        return FolderImages(
            self.files, unknown, [], self.image_size, self.channels, description, self.root, self.origin
        )

    def with_labels(self, labels: list[int], classes: list[str]) -> FolderImages:
        """The same files with ``labels`` (-1: unlabeled) over ``classes``, as ``data.labels`` gives them."""
        return FolderImages(
            self.files, labels, classes, self.image_size, self.channels, self.description, self.root, self.origin
        )

    @property
    def has_labels(self) -> bool:
        return bool(self.classes) and bool((self.labels >= 0).all())


def scan_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files below ``root`` sorted by path, their class index (-1 at the top level) and the classes."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(p.relative_to(root).parts[0], -1) if len(p.relative_to(root).parts) > 1 else -1 for p in files]
    return files, labels, classes
