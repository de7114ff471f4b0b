"""Frozen-encoder feature extraction, once, with the encoder in eval mode and no gradients."""

from __future__ import annotations

import torch

from ..data import DataInfo, EpochBatchSampler, make_loader, to_device_float


@torch.no_grad()
def extract_features(
    view, dataset, info: DataInfo, device: torch.device, batch_size: int, num_workers: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Features of every image, in dataset order, from ``view.forward_layers`` (one pass for all layers).

    Returns:
        ``{layer: (N, D_layer)}`` float32 on the CPU and labels ``(N,)`` int64 (unreadable files dropped).
        Each layer's array is allocated once, so peak memory is the features themselves.
    """
    view.eval()
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0, shuffle=False, drop_last=False)
    features: dict[str, torch.Tensor] = {}
    labels, filled = [], 0
    for batch in make_loader(dataset, sampler, num_workers, pin_memory=device.type == "cuda"):
        if len(batch.images) == 0:
            continue
        x = to_device_float(batch.images, info, device)
        for name, value in view.forward_layers(x).items():
            if name not in features:
                features[name] = torch.empty(len(dataset), value.shape[1], dtype=torch.float32)
            features[name][filled : filled + len(x)] = value.float().cpu()
        labels.append(batch.labels)
        filled += len(x)
    return {name: f[:filled] for name, f in features.items()}, torch.cat(labels)
