"""Frozen-encoder feature extraction, once, with the encoder in eval mode and no gradients."""

from __future__ import annotations

import torch

from ..data import DataInfo, EpochBatchSampler, make_loader, to_device_float
from ..encoders import Encoder


@torch.no_grad()
def extract_features(
    encoder: Encoder, dataset, info: DataInfo, device: torch.device, batch_size: int, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAP features of every image, in dataset order.

    Returns:
        features ``(N, D)`` float32 on the CPU and labels ``(N,)`` int64 (unreadable files dropped).
    """
    encoder.eval()
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0, shuffle=False, drop_last=False)
    features, labels = [], []
    for batch in make_loader(dataset, sampler, num_workers, pin_memory=device.type == "cuda"):
        if len(batch.images) == 0:
            continue
        x = to_device_float(batch.images, info, device)
        features.append(encoder.forward_features(x).float().cpu())
        labels.append(batch.labels)
    return torch.cat(features), torch.cat(labels)
