"""Exemplar (Dosovitskiy et al. 2014): every seed image is its own surrogate class.

Each step takes ``B`` seed images from the pretraining set and makes ``copies`` random
transformations of each on the device with Kornia (translation, scale, rotation, brightness,
contrast; saturation and hue for colour images). The surrogate label of a copy is its seed's
index in the selected seed set, so no label is recovered after the fact.

Two losses:

- ``classifier``: an N-way linear classifier over the seeds (the paper's form). Memory grows with
  N (N x num_features weights); use it up to a few tens of thousands of seeds.
- ``contrastive``: a multi-positive NT-Xent loss between the copies in the batch (copies of one
  seed are positives, everything else negatives). Cost depends only on the batch, not on N:
  use it for large N, up to the whole dataset (``num_seeds: null``).
"""

from __future__ import annotations

from typing import Literal

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import Encoder
from ..errors import BadInput, check_option
from .base import PretextTask
from .colour import RandomHueDirect
from .draws import augment_on_device
from .heads import accuracy
from .preview import label_each


def multi_positive_nt_xent(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float):
    """Contrastive loss where every other sample with the same label is a positive.

    Args:
        embeddings: ``(M, d)``, normalised inside.
        labels: ``(M,)``; every label must occur at least twice.

    Returns:
        (loss, accuracy): mean over anchors of ``-mean log p(positive)``; share of anchors whose
        most similar other sample is a positive.
    """
    z = F.normalize(embeddings, dim=1)
    similarity = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = (similarity - similarity.logsumexp(dim=1, keepdim=True)).masked_fill(self_mask, 0.0)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    loss = -(log_prob * positives).sum(1) / positives.sum(1).clamp_min(1)
    nearest = similarity.argmax(dim=1)
    return loss.mean(), (labels[nearest] == labels).float().mean().detach()


def exemplar_augmentation(
    channels: int,
    translate: float,
    scale: list[float],
    rotation: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    crop_scale: list[float] | None = None,
    flip: bool = False,
    erase: float = 0.0,
    size: int | None = None,
) -> nn.Sequential:
    """Kornia pipeline with per-sample parameters; colour terms only for 3-channel images.

    ``crop_scale``: first a random resized crop keeping that share of the area (SimCLR's crop); ``flip``: a
    random horizontal flip; ``erase``: the probability of erasing a random rectangle (cutout) last. ``size``:
    the images' side (the crop's output size).
    """
    ops: list[nn.Module] = []
    if crop_scale is not None:
        ops.append(K.RandomResizedCrop((size, size), scale=tuple(crop_scale), cropping_mode="resample"))
    if flip:
        ops.append(K.RandomHorizontalFlip())
    ops.append(
        K.RandomAffine(
            degrees=rotation, translate=(translate, translate), scale=tuple(scale), p=1.0, padding_mode="reflection"
        )
    )
    if brightness > 0:
        ops.append(K.RandomBrightness((1 - brightness, 1 + brightness), p=1.0))
    if contrast > 0:
        ops.append(K.RandomContrast((1 - contrast, 1 + contrast), p=1.0))
    if channels == 3 and saturation > 0:
        ops.append(K.RandomSaturation((1 - saturation, 1 + saturation), p=1.0))
    if channels == 3 and hue > 0:
        ops.append(RandomHueDirect((-hue, hue), p=1.0))  # Kornia's RandomHue, ~2x faster
    if erase > 0:
        ops.append(K.RandomErasing(scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0.5, p=erase))
    return nn.Sequential(*ops)


class Exemplar(PretextTask):
    """Surrogate-class discrimination between random transformations of seed images.

    Args:
        num_seeds: how many seed images (surrogate classes), drawn by the run's seed from the
            pretraining set; null = every image (``contrastive`` only).
        copies: transformed copies of each seed per batch (the batch holds ``batch_size * copies``).
        loss: ``classifier`` (N-way head) or ``contrastive`` (between copies; memory independent of N).
        temperature, projection_dim: of the contrastive loss and its projection head.
        translate, scale, rotation: geometric ranges (fraction of size, factor, degrees); the
            paper's 0.2, 0.7-1.4, 20.
        brightness, contrast, saturation, hue: photometric ranges; saturation and hue apply only
            to colour images (0 disables).
        crop_scale: ``[low, high]`` share of the area a random resized crop keeps, applied first (SimCLR's
            crop, stronger than the affine scale alone); null: no such crop.
        flip: a random horizontal flip of each copy.
        erase: probability of erasing a random rectangle of each copy (cutout), applied last.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        num_seeds: int | None = 8000,
        copies: int = 4,
        loss: Literal["classifier", "contrastive"] = "classifier",
        temperature: float = 0.1,
        projection_dim: int = 128,
        translate: float = 0.2,
        scale: list[float] = (0.7, 1.4),
        rotation: float = 20.0,
        brightness: float = 0.2,
        contrast: float = 0.4,
        saturation: float = 0.0,
        hue: float = 0.0,
        crop_scale: list[float] | None = None,
        flip: bool = False,
        erase: float = 0.0,
    ):
        super().__init__(encoder)
        check_option(num_seeds is None or num_seeds >= 2, "num_seeds", f"must be >= 2 or null, got {num_seeds}")
        check_option(
            num_seeds is not None or loss == "contrastive",
            "num_seeds",
            "null (every image) needs loss: contrastive; the classifier needs a fixed number of classes",
        )
        check_option(copies >= 2, "copies", f"must be >= 2, got {copies}")
        check_option(0 <= translate <= 0.5, "translate", f"must be in [0, 0.5], got {translate}")
        check_option(len(scale) == 2 and 0 < scale[0] <= scale[1], "scale", f"must be [low, high] > 0, got {scale}")
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            check_option(0 <= value < 1, name, f"must be in [0, 1), got {value}")
        check_option(0 <= hue <= 0.5, "hue", f"must be in [0, 0.5], got {hue}")
        check_option(temperature > 0, "temperature", f"must be > 0, got {temperature}")
        check_option(
            crop_scale is None or (len(crop_scale) == 2 and 0 < crop_scale[0] <= crop_scale[1] <= 1),
            "crop_scale",
            f"must be [low, high] with 0 < low <= high <= 1, or null, got {crop_scale}",
        )
        check_option(0 <= erase <= 1, "erase", f"must be in [0, 1], got {erase}")
        self.num_seeds = num_seeds
        self.copies = copies
        self.loss_kind = loss
        self.needs_whole_batch = loss == "contrastive"
        self.temperature = temperature
        channels = encoder.spec.in_channels
        self.augment = exemplar_augmentation(
            channels, translate, list(scale), rotation, brightness, contrast, saturation, hue,
            crop_scale=crop_scale, flip=flip, erase=erase, size=encoder.spec.image_size,
        )  # fmt: skip
        d = encoder.num_features
        if loss == "classifier":
            self.head = nn.Linear(d, num_seeds)
        else:
            self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, projection_dim))
        self._last_seeds: torch.Tensor | None = None

    def select_images(self, num_images: int, seed: int) -> torch.Tensor | None:
        if self.num_seeds is None:
            return None
        if self.num_seeds > num_images:
            raise BadInput(
                f"task.num_seeds: {self.num_seeds} seeds asked but the pretraining set has only "
                f"{num_images} images (lower task.num_seeds or raise data.limit)"
            )
        order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed + 1))
        return order[: self.num_seeds].sort().values

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor):
        """``(B, C, H, W)`` seeds -> ``(B * copies, C, H, W)`` transformed copies and their seed ids."""
        self._last_seeds = images[:4].detach()
        copies = augment_on_device(self.augment, images.repeat_interleave(self.copies, dim=0))
        return copies, indices.repeat_interleave(self.copies)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(inputs))

    def loss(self, outputs, targets):
        if self.loss_kind == "classifier":
            return F.cross_entropy(outputs, targets), {"accuracy": accuracy(outputs, targets)}
        loss, acc = multi_positive_nt_xent(outputs, targets, self.temperature)
        return loss, {"accuracy": acc}

    def previews(self, inputs, targets, outputs):
        """Each row: a seed image, then its transformed copies, each marked with its surrogate class."""
        if self._last_seeds is None:
            return {}
        n = len(self._last_seeds)
        rows = []
        for i in range(n):
            copies = inputs[i * self.copies : (i + 1) * self.copies]
            label = str(int(targets[i * self.copies]))
            rows.append(
                torch.cat(
                    [label_each(self._last_seeds[i : i + 1], ["seed"]), label_each(copies, [label] * len(copies))]
                )
            )
        return {"exemplar/seed_then_copies": torch.stack(rows)}
