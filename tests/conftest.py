"""Fixtures: small generated data (no network). Helpers the tests import live in ``tests/helpers.py``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssl_pretrain.data.idx import write_idx

from .helpers import _pattern


def make_image_folder(root):
    """``root/class_k/img_i.png``: 3 classes x 12 RGB 32x32 images."""
    rng = np.random.default_rng(0)
    for cls in range(3):
        folder = root / f"class_{cls}"
        folder.mkdir(parents=True)
        for i in range(12):
            Image.fromarray(_pattern(cls, rng)).save(folder / f"img_{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    """``root/class_k/img_i.png``: 3 classes x 12 RGB 32x32 images."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def fashion_mnist_root(tmp_path):
    """A tiny stand-in for Fashion-MNIST's IDX files (64 train, 32 test images of 28x28)."""
    root = tmp_path / "fmnist"
    root.mkdir()
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 64), ("t10k", 32)):
        labels = np.arange(n) % 10
        images = np.stack([_pattern(int(c), rng, 28)[..., 0] for c in labels])
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return root
