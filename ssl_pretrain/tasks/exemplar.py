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

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import Encoder
from ..errors import BadInput, check_option
from ..utils.draws import augment_on_device
from .base import PretextTask
from .parts.heads import accuracy
from .parts.losses import multi_positive_nt_xent
from .parts.preview import label_each
from .parts.views import ViewOptions


class Exemplar(PretextTask):
    """Surrogate-class discrimination between random transformations of seed images.

    ``**views`` are the :class:`~ssl_pretrain.tasks.parts.views.ViewOptions` (config keys ``task.translate``,
    ...), with the paper's jitter as defaults (:attr:`VIEW_DEFAULTS`); the local crops are extra copies.

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
        local_crops, local_size, local_scale: multi-crop: this many extra copies of each seed at a reduced
            resolution, each a crop of ``local_scale`` of the area resized to ``local_size`` px (null: 4/7 of
            the image's side), with the same jitter; they are positives of their seed's other copies.
    """

    VIEW_DEFAULTS = ViewOptions(
        crop_scale=None, flip=False, translate=0.2, scale=(0.7, 1.4), rotation=20.0, brightness=0.2, contrast=0.4
    )
    option_groups = (VIEW_DEFAULTS,)  # its fields are options too (options.option_signature)

    def __init__(
        self,
        encoder: Encoder,
        *,
        num_seeds: int | None = 8000,
        copies: int = 4,
        loss: Literal["classifier", "contrastive"] = "classifier",
        temperature: float = 0.1,
        projection_dim: int = 128,
        **views,
    ):
        super().__init__(encoder)
        check_option(num_seeds is None or num_seeds >= 2, "num_seeds", f"must be >= 2 or null, got {num_seeds}")
        check_option(
            num_seeds is not None or loss == "contrastive",
            "num_seeds",
            "null (every image) needs loss: contrastive; the classifier needs a fixed number of classes",
        )
        check_option(copies >= 2, "copies", f"must be >= 2, got {copies}")
        check_option(temperature > 0, "temperature", f"must be > 0, got {temperature}")
        views = self.VIEW_DEFAULTS.given(views, encoder.spec.image_size)
        self.num_seeds = num_seeds
        self.copies = copies
        self.loss_kind = loss
        self.needs_whole_batch = loss == "contrastive"
        self.temperature = temperature
        self.local_crops = views.local_crops
        self.augment, self.local_augment = views.pipelines(encoder.spec.in_channels, encoder.spec.image_size)
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
        """``(B, C, H, W)`` seeds -> ``(B * copies, C, H, W)`` transformed copies and their seed ids; with local
        crops, ``{"global": those copies, "local": (B * local_crops, C, s, s)}`` and the ids of each."""
        self._last_seeds = images[:4].detach()
        copies = augment_on_device(self.augment, images.repeat_interleave(self.copies, dim=0))
        ids = indices.repeat_interleave(self.copies)
        if not self.local_crops:
            return copies, ids
        local = augment_on_device(self.local_augment, images.repeat_interleave(self.local_crops, dim=0))
        return {"global": copies, "local": local}, {"global": ids, "local": indices.repeat_interleave(self.local_crops)}

    def forward(self, inputs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Head outputs of every copy; the encoder runs once per resolution (global copies, local crops)."""
        if isinstance(inputs, dict):
            return {name: self.head(self.encoder.forward_features(x)) for name, x in inputs.items()}
        return self.head(self.encoder.forward_features(inputs))

    def loss(self, outputs, targets):
        if isinstance(outputs, dict):  # multi-crop: every copy of a seed, at either resolution, is its positive
            outputs, targets = torch.cat(list(outputs.values())), torch.cat(list(targets.values()))
        if self.loss_kind == "classifier":
            return F.cross_entropy(outputs, targets), {"accuracy": accuracy(outputs, targets)}
        loss, acc = multi_positive_nt_xent(outputs, targets, self.temperature)
        return loss, {"accuracy": acc}

    def previews(self, inputs, targets, outputs):
        """Each row: a seed image, then its transformed copies, each marked with its surrogate class."""
        if self._last_seeds is None:
            return {}
        if isinstance(inputs, dict):
            inputs, targets = inputs["global"], targets["global"]
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
