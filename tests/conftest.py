"""Shared fixtures: small generated data (no network) and a tiny CPU configuration."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssl_pretrain.data.idx import write_idx

# A model and budget small enough for a few CPU seconds per run.
TINY = [
    "device=cpu",
    "model.backbone=small_resnet",
    "model.widths=[4, 8]",
    "model.blocks=[1, 1]",
    "trainer.batch_size=8",
    "trainer.max_steps=3",
    "trainer.warmup_steps=1",
    "trainer.log_every=1",
    "trainer.image_every=2",
    "trainer.checkpoint_every=2",
    "trainer.progress=false",
    "probe.max_iter=30",
]


def _pattern(cls: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A class-dependent texture (stripes one way, the other, or a checkerboard) plus noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.integers(0, 4)
    base = [(yy + phase) // 4 % 2, (xx + phase) // 4 % 2, ((yy + phase) // 4 + (xx + phase) // 4) % 2][cls % 3]
    image = base * 180 + rng.integers(0, 60, size=(size, size))
    return np.repeat(image[..., None], 3, axis=2).astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path):
    """``root/class_k/img_i.png``: 3 classes x 12 RGB 32x32 images."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in range(3):
        folder = root / f"class_{cls}"
        folder.mkdir(parents=True)
        for i in range(12):
            Image.fromarray(_pattern(cls, rng)).save(folder / f"img_{i}.png")
    return root


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


def seeded_batch(task, seed: int, *batch_args):
    """``task.make_batch(*batch_args)`` right after ``torch.manual_seed(seed)``."""
    import torch

    torch.manual_seed(seed)
    return task.make_batch(*batch_args)


def folder_overrides(image_folder, output_dir, run_name: str = "run") -> list[str]:
    return TINY + [
        "data.name=image_folder",
        f"data.root={image_folder}",
        "data.image_size=16",
        f"output_dir={output_dir}",
        f"run_name={run_name}",
    ]


def interrupt_after_checkpoint(monkeypatch, step: int) -> None:
    """Make a pretraining in this process stop (as with Ctrl-C) right after saving its step-``step`` checkpoint."""
    from ssl_pretrain.train import trainer

    save = trainer._save_checkpoint

    def save_then_interrupt(run):
        save(run)
        if run.progress.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_interrupt)
