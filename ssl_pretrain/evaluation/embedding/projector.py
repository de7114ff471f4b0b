"""TensorBoard's embedding projector for an embeddings folder: a seeded sample of rows with sprite thumbnails and
label/path metadata, written with TensorBoard's own writer (``add_embedding``), so that
``tensorboard --logdir <folder>/projector`` shows the learned space (PCA, t-SNE, UMAP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

THUMBNAIL = 32  # px: larger images are shrunk for the sprite (TensorBoard's sprite is at most 8192 px wide)


def projector_rows(total: int, count: int, seed: int) -> np.ndarray:
    """At most ``count`` of ``total`` rows, drawn by ``seed``, in row order."""
    if count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))


def write_projector(folder: Path, vectors: np.ndarray, images: torch.Tensor, labels: list[str], paths: list[str]):
    """``vectors (n, D)``, their ``images (n, C, H, W)`` uint8 and metadata -> a projector log in ``folder``."""
    thumbs = images.float().div(255)
    if thumbs.shape[-1] > THUMBNAIL:
        thumbs = F.interpolate(thumbs, size=(THUMBNAIL, THUMBNAIL), mode="bilinear", antialias=True).clamp(0, 1)
    if thumbs.shape[1] == 1:
        thumbs = thumbs.expand(-1, 3, -1, -1)
    metadata = [[label or "?", path or "-"] for label, path in zip(labels, paths, strict=True)]
    with SummaryWriter(str(folder)) as writer:
        writer.add_embedding(
            torch.from_numpy(np.ascontiguousarray(vectors)),
            metadata=metadata,
            label_img=thumbs,
            metadata_header=["label", "source"],
            tag="embeddings",
        )
    return folder
