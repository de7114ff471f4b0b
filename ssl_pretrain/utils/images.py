"""Small image operations shared by the data and task layers."""

from __future__ import annotations

import torch

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def to_grey(images: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """RGB -> luma along ``dim`` (kept, size 1): ``(..., 3, ...)`` -> ``(..., 1, ...)``.

    Python-number weights, so no weight tensor is built (and copied to the device) per call."""
    r, g, b = images.split(1, dim=dim)
    return r * LUMA[0] + g * LUMA[1] + b * LUMA[2]
