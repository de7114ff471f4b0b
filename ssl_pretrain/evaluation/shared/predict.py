"""Run a trained classifier over a labeled split: logits in dataset order."""

from __future__ import annotations

import torch

from ...data import DataInfo, EpochBatchSampler, make_loader, to_device_float
from .metrics import percent_correct


def classifier_info(model) -> DataInfo:
    """How images must be fed to an ``ImageClassifier``: its encoder's channels and its image size."""
    return DataInfo.from_spec(model.encoder.spec, model.image_size)


@torch.no_grad()
def predict_logits(model, dataset, device: torch.device, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, K), labels (N,))`` on the CPU, the model in eval mode."""
    model.eval()
    info = classifier_info(model)
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0, shuffle=False, drop_last=False)
    logits, labels = [], []
    for batch in make_loader(dataset, sampler, 0, pin_memory=device.type == "cuda"):
        if len(batch.images):
            logits.append(model(to_device_float(batch.images, info, device)).float().cpu())
            labels.append(batch.labels)
    if not logits:  # an empty split (too few labels to hold any out)
        return torch.zeros(0, model.num_classes), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 in percent of ``logits (N, K)``, rounded to 2 decimals."""
    return percent_correct(logits.argmax(dim=1), labels)
