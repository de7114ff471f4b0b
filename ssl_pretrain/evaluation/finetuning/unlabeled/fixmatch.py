"""FixMatch (Sohn et al. 2020): confident predictions on a weak view are the targets of a strong view.

Each step takes a labeled batch of ``B`` images and ``ratio x B`` unlabeled ones (labels removed before
they are loaded). The model's prediction on a weakly augmented view (flip + crop) of an unlabeled image,
where its confidence reaches ``threshold``, becomes the pseudo-label that a strongly augmented view of the
same image (RandAugment-style photometric and geometric ops, then cutout, per-sample parameters, Kornia on
the device) is trained towards. The weak view goes through the model without gradients (its predictions are
targets, so no backward pass is spent on them); labeled and strong views share one forward pass. Loss:
``CE(labeled) + weight * mean(mask * CE(strong, pseudo-label))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....config import listed
from ....errors import check_option
from ....utils.draws import augment_on_device
from ..augment import STRONG_OPS, finetune_augmentation, strong_augmentation
from .base import Objective, PoolMethod


def fixmatch_loss(
    model: nn.Module,
    labeled: torch.Tensor,
    labels: torch.Tensor,
    weak: torch.Tensor,
    strong: torch.Tensor,
    threshold: float,
    weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Supervised + masked pseudo-label loss; ``labeled (B, C, S, S)``, ``weak``/``strong (U, C, S, S)`` two views
    of the same unlabeled images. Returns the loss and detached statistics (share of pseudo-labels kept, mean
    confidence, each part of the loss)."""
    n = len(labeled)
    with torch.no_grad():  # the pseudo-labels are targets: no backward pass through the weak view
        probs = model(weak).float().softmax(dim=1)
    logits = model(torch.cat([labeled, strong]))
    supervised = F.cross_entropy(logits[:n], labels)
    confidence, pseudo = probs.max(dim=1)
    mask = (confidence >= threshold).float()
    consistency = (F.cross_entropy(logits[n:], pseudo, reduction="none") * mask).mean()
    stats = {
        "pseudo_label_rate": mask.mean(),
        "confidence": confidence.mean(),
        "supervised_loss": supervised.detach(),
        "consistency_loss": consistency.detach(),
    }
    return supervised + weight * consistency, stats


class FixMatchObjective(Objective):
    def __init__(self, image_size: int, threshold: float, weight: float, device: torch.device):
        self.weak = finetune_augmentation("crop_flip", image_size).to(device)
        self.strong = strong_augmentation().to(device)
        self.threshold, self.weight = threshold, weight
        self.study_threshold = threshold  # the study checks the pseudo-labels this candidate keeps

    def views(self, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_on_device(self.weak, pool), augment_on_device(self.strong, pool)

    def loss(self, model, images, labels, views):
        weak, strong = views
        return fixmatch_loss(model, images, labels, weak, strong, self.threshold, self.weight)


class FixMatch(PoolMethod):
    """``finetune.unlabeled.method=fixmatch``: ``ratio`` unlabeled images per labeled one, pseudo-labels kept
    above ``threshold`` confidence (both may be lists: candidates), their loss weighed by ``weight``."""

    grid = ("ratio", "threshold")
    description = "FixMatch: confident weak-view predictions as targets of a strong view"

    def __init__(self, *, ratio: float | list[float] = 3.0, threshold: float | list[float] = 0.95, weight: float = 1.0):
        super().__init__(ratio=ratio, weight=weight, threshold=threshold)

    @classmethod
    def complete_options(cls, options: dict) -> dict:
        values = listed(options["threshold"])
        message = "must be in (0, 1), or a non-empty list of them"
        check_option(bool(values) and all(0 < v < 1 for v in values), "threshold", message)
        return super().complete_options(options)

    def objective(self, model, setting, seed, device):
        return FixMatchObjective(model.image_size, setting["threshold"], self.options["weight"], device)

    def record(self, setting, pool_text):
        record = super().record(setting, pool_text)
        return {**record, "threshold": setting["threshold"], "strong_augmentation": STRONG_OPS}
