"""Fine-tuning's augmentations, batched and per sample on the device with Kornia."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

STRONG_OPS = "flip, affine, brightness, contrast, sharpness, posterize, solarize, equalize, then cutout"


def strong_augmentation() -> nn.Module:
    """Per-sample strong augmentation on the device: each op fires with its own probability per image."""
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(),
        K.RandomAffine(degrees=30.0, translate=(0.125, 0.125), shear=(-15.0, 15.0), p=0.7, padding_mode="reflection"),
        K.RandomBrightness((0.5, 1.5), p=0.5),
        K.RandomContrast((0.5, 1.5), p=0.5),
        K.RandomSharpness(0.9, p=0.4),
        K.RandomPosterize((3, 6), p=0.3),
        K.RandomSolarize(0.1, 0.1, p=0.2),
        K.RandomEqualize(p=0.2),
        K.RandomErasing(scale=(0.05, 0.2), ratio=(0.5, 2.0), value=0.5, p=1.0),
    )


def finetune_augmentation(kind: str, size: int) -> torch.nn.Module:
    """Batched, per-sample random crop (padding size/8) and/or horizontal flip on the device; ``strong``: the
    RandAugment-style ops with cutout of :func:`strong_augmentation`."""
    if kind == "strong":
        return strong_augmentation()
    ops = []
    if kind == "crop_flip":
        ops.append(K.RandomCrop((size, size), padding=max(1, size // 8), padding_mode="reflect"))
    if kind in ("flip", "crop_flip"):
        ops.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*ops) if ops else torch.nn.Identity()
