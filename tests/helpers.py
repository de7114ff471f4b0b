"""Helpers the tests share: a tiny CPU configuration, generated images, run helpers."""

from __future__ import annotations

import numpy as np

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
    "data.num_workers=0",
    "probe.max_iter=30",
    "trainer.precision=fp32",  # the same numeric path on every CPU (bf16 and fp16 are tested on their own)
]


def _pattern(cls: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A class-dependent texture (stripes one way, the other, or a checkerboard) plus noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.integers(0, 4)
    base = [(yy + phase) // 4 % 2, (xx + phase) // 4 % 2, ((yy + phase) // 4 + (xx + phase) // 4) % 2][cls % 3]
    image = base * 180 + rng.integers(0, 60, size=(size, size))
    return np.repeat(image[..., None], 3, axis=2).astype(np.uint8)


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
    from ssl_pretrain.train import checkpoint

    save = checkpoint.save_checkpoint

    def save_then_interrupt(run):
        save(run)
        if run.state.progress.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_interrupt)
