"""Kornia augmentations whose random parameters are drawn where the images are.

Kornia 0.9 draws every augmentation's parameters on the CPU in float32 and copies them to the images' device
each call (kornia issue 4426): ``set_rng_device_and_dtype`` and ``.to()`` move the samplers, but each draw is
then cast to the device and dtype Kornia reads off the op's range values, which are Python numbers (so the
default device) or, for the colour ops, tensors kept from construction (so the CPU). :func:`augment_on_device` places
the samplers and those tensors on the images' device and dtype once, and runs the pipeline with that device
as the default, so every draw is made there: no copy and no wait for the host on a GPU (reasoned from the
code; no GPU here to measure it).

On the CPU nothing changes: the same draws from the same generator, so results and resumes are as before.
"""

from __future__ import annotations

import torch
from kornia.augmentation.random_generator import PlainUniformGenerator
from torch import nn


def place_draws(pipeline: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Make every op of ``pipeline`` sample its parameters on ``device`` in ``dtype`` (when the default
    device is ``device``, as under :func:`augment_on_device`)."""
    for op in pipeline.modules():
        generator = getattr(op, "_param_generator", None)
        if isinstance(generator, PlainUniformGenerator):  # its ranges: tensors kept on the CPU
            generator.samplers = tuple((_placed(factor, device, dtype), *rest) for factor, *rest in generator.samplers)
        if hasattr(op, "set_rng_device_and_dtype"):
            op.set_rng_device_and_dtype(device, dtype)


def _placed(factor, device: torch.device, dtype: torch.dtype):
    """A sampler's range on ``device`` in ``dtype``: moved once (the trainer places them before its first step),
    left as it is when already there, so a step never asks for the move again."""
    if not isinstance(factor, torch.Tensor):
        return factor
    device = torch.device(device)
    there = factor.device.type == device.type and device.index in (None, factor.device.index)
    if there and factor.dtype == dtype:
        return factor
    return factor.to(device, dtype)


def augment_on_device(pipeline: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``pipeline(images)`` with its random parameters drawn on ``images``' device. ``(B, C, H, W)`` float
    -> the same shape (or the pipeline's output size)."""
    placed = (images.device, images.dtype)
    if getattr(pipeline, "_draws_placed", None) != placed:
        place_draws(pipeline, *placed)
        pipeline._draws_placed = placed
    if images.device == torch.get_default_device():
        return pipeline(images)
    # Kornia reads the device of ops whose ranges are plain numbers off the default device. The context costs
    # Python time per op (~3 ms per Exemplar step here); the CPU-drawn alternative makes the host wait for the
    # GPU at each copy of a draw, so it pays on a GPU and is skipped where the images are on the default device.
    with torch.device(images.device):
        return pipeline(images)
