"""For studies only: how right FixMatch-style pseudo-labels would be, from a labeled copy of part of the
unlabeled pool kept apart from training (``finetune.pseudo_label_accuracy``)."""

from __future__ import annotations

import torch
from torch import nn

from ...data import DataInfo, EpochBatchSampler, make_loader, to_device_float


@torch.no_grad()
def pseudo_label_accuracy(model: nn.Module, study, info: DataInfo, device, threshold: float) -> dict[str, float]:
    """For studies only: how often the confident pseudo-labels of un-augmented unlabeled images are right,
    the share of images that get one (coverage), and how often the prediction is right for every image,
    confident or not; from a labeled copy of (part of) the pool kept apart from training. Never used for
    training or choices."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    sampler = EpochBatchSampler(len(study), 512, seed=0, shuffle=False, drop_last=False)
    right = kept = total = correct = 0
    for batch in make_loader(study, sampler, 0, pin_memory=False):
        probs = model(to_device_float(batch.images, info, device)).float().softmax(dim=1).cpu()
        confidence, predicted = probs.max(dim=1)
        chosen = confidence >= threshold
        kept += int(chosen.sum())
        right += int((predicted[chosen] == batch.labels[chosen]).sum())
        correct += int((predicted == batch.labels).sum())
        total += len(batch.labels)
    for module, training in modes.items():
        module.train(training)
    return {
        "pseudo_label_accuracy": 100.0 * right / max(1, kept),
        "pseudo_label_coverage": 100.0 * kept / max(1, total),
        "prediction_accuracy": 100.0 * correct / max(1, total),
    }
