"""Collapse and rank gauges during pretraining, without labels: every ``gauges.every`` steps (and at the last)
the encoder embeds a fixed seeded set of ``gauges.images`` pretraining images (global average pooling, what a
probe reads; fp32) and two figures go to TensorBoard (``gauges/rankme``, ``gauges/std``) and ``metrics.json``:

- RankMe (Garrido et al. 2023): the effective rank of the embeddings; near 1 means every image maps to one
  direction (complete collapse), far below the width means dimensional collapse;
- the normalised spread: per-dimension standard deviation of the L2-normalised embeddings times sqrt(D); 0
  when all embeddings are equal.

A figure under its floor (``gauges.min_rank``, ``gauges.min_std``) warns once, naming the step. Like online
evaluation it observes and never steers (modes and RNG put back), runs on rank 0, and its time is not counted;
the measurements so far travel in checkpoints, so a resumed run's ``metrics.json`` has them all.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import GaugesConfig
from ..data import DataInfo
from ..evaluation.frozen.label_free import gauge_images, label_free_figures
from .observe import observing


def collapse_warning(step: int, rank: float, std: float, cfg: GaugesConfig) -> str | None:
    """The one-line warning for figures under their floors at ``step``, or None."""
    low = []
    if rank < cfg.min_rank:
        low.append(f"RankMe {rank:.2f} < gauges.min_rank {cfg.min_rank}")
    if std < cfg.min_std:
        low.append(f"normalised std {std:.3f} < gauges.min_std {cfg.min_std}")
    if not low:
        return None
    return (
        f"warning: the representation collapsed at step {step} ({'; '.join(low)}): the encoder maps the images "
        "to too few directions; lower trainer.lr, or check the task's options (docs/tasks.md, collapse)"
    )


class RepresentationGauge:
    """A fixed seeded set of pretraining images; ``due`` says when, ``measure`` embeds them and returns the
    figures."""

    def __init__(self, cfg: GaugesConfig, dataset, info: DataInfo, device: torch.device, seed: int, batch: int):
        self.cfg, self.info, self.device, self.batch = cfg, info, device, batch
        self.images = gauge_images(dataset, cfg.images, seed)

    def due(self, step: int, total_steps: int) -> bool:
        return step % self.cfg.every == 0 or step == total_steps

    def measure(self, encoder: nn.Module) -> dict[str, float]:
        """``{"rankme", "std"}`` of ``encoder``'s pooled embeddings of the images (fp32), now."""
        with observing(encoder, self.device):
            return label_free_figures(encoder, self.images, self.info, self.device, self.batch)


def gauge_summary(history: list[dict], warned_at: int | None) -> dict:
    """What ``metrics.json`` keeps: the last figures, every measurement, the step of the collapse warning."""
    last = history[-1] if history else {}
    return {
        "gauge_rankme": last.get("rankme"),
        "gauge_std": last.get("std"),
        "gauges": history,
        "collapse_warning_step": warned_at,
    }
