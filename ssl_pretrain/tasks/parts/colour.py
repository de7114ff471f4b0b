"""Hue shifts computed directly in RGB: Kornia's result without its HSV round trip.

Kornia's ``RandomHue`` converts to HSV, adds the angle and converts back through a five-way sextant
selection per channel; it was the costliest op of the Exemplar colour pipeline (133 ms of 255 ms per
batch of 128 at 96 px, ``benchmarks/augmentation_speed.py``). A hue shift keeps each pixel's maximum
and minimum channel, so the output is ``max - (max - min) * clamp(min(k, 4 - k), 0, 1)`` per channel
with ``k = (n + hue) mod 6`` in sextant units, ``n`` = 5, 3, 1 for R, G, B: the same values (to float32
rounding, ~2e-6) in fewer passes over the image.
"""

from __future__ import annotations

import math
from typing import Any

import kornia.augmentation as K
import torch

_CHANNEL_OFFSETS = (5.0, 3.0, 1.0)  # R, G, B in sextants of the hue circle


def channel_offsets(device: torch.device | None = None) -> torch.Tensor:
    """``(1, 3, 1, 1)``: each channel's offset on the hue circle, in sextants."""
    return torch.tensor(_CHANNEL_OFFSETS, device=device).view(1, 3, 1, 1)


def shift_hue(image: torch.Tensor, angle: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate the HSV hue of RGB images in [0, 1].

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1].
        angle: ``(B,)`` radians added to each image's hue.
        offsets: :func:`channel_offsets` already on the images' device (a module keeps them as a buffer);
            None builds them here (a copy from the host on a GPU).
    Returns:
        ``(B, 3, H, W)``: what ``kornia.enhance.adjust_hue(image, angle)`` returns, with grey pixels
        (max = min) unchanged.
    """
    high = image.amax(dim=-3, keepdim=True)
    low = image.amin(dim=-3, keepdim=True)
    chroma = high - low
    divisor = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    r, g, b = image.split(1, dim=-3)
    # Hue in sextants [0, 6), with the first maximal channel choosing the sextant (as Kornia does).
    hue = torch.where(
        (r >= g) & (r >= b), (g - b) / divisor, torch.where(g >= b, (b - r) / divisor + 2, (r - g) / divisor + 4)
    )
    hue = hue + (angle * (3 / math.pi)).view(-1, 1, 1, 1).to(image.dtype)
    if offsets is None:
        offsets = channel_offsets(image.device)
    k = torch.remainder(offsets.to(image.dtype) + hue, 6.0)
    return high - chroma * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class RandomHueDirect(K.RandomHue):
    """``kornia.augmentation.RandomHue`` (same parameters, same random draws) computed by :func:`shift_hue`.

    Half-precision inputs keep Kornia's own path, whose rounding differs from this formula's there.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("offsets", channel_offsets(), persistent=False)  # moves with the task

    def apply_transform(
        self,
        input: torch.Tensor,
        params: dict[str, torch.Tensor],
        flags: dict[str, Any],
        transform: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input.dtype not in (torch.float32, torch.float64):
            return super().apply_transform(input, params, flags, transform)
        angle = params["hue_factor"].to(input.dtype) * (2 * math.pi)  # drawn on the images' device already
        return shift_hue(input.clamp(0, 1), angle, self.offsets).clamp(0, 1)
