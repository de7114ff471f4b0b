"""Frozen-encoder feature extraction, once, with the encoder in eval mode and no gradients."""

from __future__ import annotations

import contextlib

import torch

from ...data import DataInfo, EpochBatchSampler, make_loader, to_device_float
from ...utils.precision import Precision


@torch.no_grad()
def extract_features(
    view,
    dataset,
    info: DataInfo,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
    precision: Precision | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Features of every image, in dataset order, from ``view.forward_layers`` (one pass for all layers),
    under ``precision``'s autocast (the run's ``trainer.precision``; None: fp32).

    Returns:
        ``{layer: (N, D_layer)}`` float32 on the CPU and labels ``(N,)`` int64 (unreadable files dropped).
        Each layer's array is allocated once, so peak memory is the features themselves. On CUDA the
        arrays are pinned and filled without waiting for each batch; the device is synchronised once.
    """
    view.eval()
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0, shuffle=False, drop_last=False)
    cuda = device.type == "cuda"
    features: dict[str, torch.Tensor] = {}
    labels, filled = [], 0
    for batch in make_loader(dataset, sampler, num_workers, pin_memory=cuda):
        if len(batch.images) == 0:
            continue
        x = to_device_float(batch.images, info, device)
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            layers = view.forward_layers(x)
        for name, value in layers.items():
            if name not in features:
                features[name] = torch.empty(len(dataset), value.shape[1], dtype=torch.float32, pin_memory=cuda)
            features[name][filled : filled + len(x)].copy_(value.float(), non_blocking=cuda)
        labels.append(batch.labels)
        filled += len(x)
    if cuda:
        torch.cuda.synchronize(device)
    return {name: f[:filled] for name, f in features.items()}, torch.cat(labels)
