"""Corruptions for the denoising autoencoder, with per-sample random draws made on the device.

Pure functions first (:func:`pixel_mask`, :func:`apply_mask`), Kornia augmentations around them
second (:class:`RandomPixelMasking`); Gaussian and salt-and-pepper noise are Kornia's own.
All work on images in ``[0, 1]``; ``aug(x, params=aug._params)`` replays a draw exactly.
"""

from __future__ import annotations

from typing import Any

import kornia.augmentation as K
import torch
from kornia.augmentation import IntensityAugmentationBase2D


def pixel_mask(
    batch: int, height: int, width: int, fraction: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Exactly ``round(fraction * H * W)`` masked pixels per sample, chosen independently.

    Returns:
        bool tensor ``(B, 1, H, W)``, True where the pixel is masked.
    """
    count = round(fraction * height * width)
    scores = torch.rand(batch, height * width, device=device, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < count).view(batch, 1, height, width)


def apply_mask(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the masked pixels in every channel. ``(B, C, H, W), (B, 1, H, W) -> (B, C, H, W)``."""
    return images.masked_fill(mask, 0.0)


class RandomPixelMasking(IntensityAugmentationBase2D):
    """Masking noise (Vincent et al. 2008): a fraction of each image's pixels set to zero.

    Args:
        fraction: share of pixels zeroed per sample, exact up to rounding.
    """

    def __init__(self, fraction: float):
        super().__init__(p=1.0, same_on_batch=False, keepdim=False)
        self.fraction = fraction

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        b, _, h, w = batch_shape
        device = getattr(self, "device", None) or torch.device("cpu")
        return {"mask": pixel_mask(b, h, w, self.fraction, device)}

    def apply_transform(
        self,
        input: torch.Tensor,
        params: dict[str, torch.Tensor],
        flags: dict[str, Any],
        transform: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return apply_mask(input, params["mask"].to(input.device))


CORRUPTIONS = ("masking", "gaussian", "salt_pepper")


def make_corruption(kind: str, level: float) -> IntensityAugmentationBase2D:
    """``masking``: fraction zeroed; ``gaussian``: noise std in [0, 1] units; ``salt_pepper``: fraction hit."""
    if kind == "masking":
        return RandomPixelMasking(level)
    if kind == "gaussian":
        return K.RandomGaussianNoise(mean=0.0, std=level, p=1.0)
    if kind == "salt_pepper":
        return K.RandomSaltAndPepperNoise(amount=float(level), salt_vs_pepper=0.5, p=1.0)
    raise ValueError(f"unknown corruption {kind!r}; accepted: {', '.join(CORRUPTIONS)}")
