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
from torch import nn


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
        return apply_mask(input, params["mask"])  # drawn on the images' device (augment_on_device places it)


class RandomSaltPepper(nn.Module):
    """Salt-and-pepper noise: each pixel, independently, set to 1 (salt) or 0 (pepper) with probability
    ``amount / 2`` each, the same pixel in every channel; drawn on the images' device, one draw per pixel
    (Kornia's version draws its full-size masks on the CPU and copies them over every step)."""

    def __init__(self, amount: float):
        super().__init__()
        self.amount = amount

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        draw = torch.rand(b, 1, h, w, device=images.device)
        salt, pepper = draw < self.amount / 2, draw > 1 - self.amount / 2
        out = torch.where(salt, torch.ones_like(images), images)
        return torch.where(pepper, torch.zeros_like(images), out)

    def set_rng_device_and_dtype(self, device: torch.device, dtype: torch.dtype) -> None:
        """Nothing to move: draws are made where the images are (the interface Kornia's ops have)."""
        self.device = device


CORRUPTIONS = ("masking", "gaussian", "salt_pepper")


def make_corruption(kind: str, level: float) -> nn.Module:
    """``masking``: fraction zeroed; ``gaussian``: noise std in [0, 1] units; ``salt_pepper``: fraction hit."""
    if kind == "masking":
        return RandomPixelMasking(level)
    if kind == "gaussian":
        return K.RandomGaussianNoise(mean=0.0, std=level, p=1.0)
    if kind == "salt_pepper":
        return RandomSaltPepper(float(level))
    raise ValueError(f"unknown corruption {kind!r}; accepted: {', '.join(CORRUPTIONS)}")
