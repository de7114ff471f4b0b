"""Rotation prediction (Gidaris et al. 2018): which of 0/90/180/270 degrees was an image turned by?

Rotations are exact index permutations (``torch.rot90``), never interpolated. Labels are drawn
exactly uniformly: with ``mode='one'`` each batch holds every rotation ``B/4`` times (up to the
remainder), shuffled; with ``mode='all'`` every image appears in all four rotations.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..encoders import Encoder
from ..errors import check_option
from .base import PretextTask
from .parts.heads import accuracy, classifier_head
from .parts.preview import label_each


def balanced_labels(count: int, classes: int, device: torch.device) -> torch.Tensor:
    """``(count,)`` labels with each class ``count // classes`` or one more times, in random order."""
    labels = torch.arange(count, device=device) % classes
    return labels[torch.randperm(count, device=device)]


def rotate_by_label(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rotate image ``i`` by ``labels[i] * 90`` degrees counter-clockwise. ``(B, C, S, S) -> (B, C, S, S)``.

    All four rotations are made and each image's picked by index: no boolean masks, whose variable sizes
    would make the host wait for the device every step."""
    rotations = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])  # (4, B, C, S, S)
    return rotations[labels, torch.arange(len(images), device=images.device)]


class RotationPrediction(PretextTask):
    """4-way rotation classification from the encoder's pooled features.

    Args:
        mode: ``one`` rotation per image (balanced labels) or ``all`` four per image (4x batch).
        head_hidden: hidden width of the classification head (0: linear head).
    """

    def __init__(self, encoder: Encoder, *, mode: Literal["one", "all"] = "one", head_hidden: int = 0):
        super().__init__(encoder)
        check_option(head_hidden >= 0, "head_hidden", f"must be >= 0, got {head_hidden}")
        self.mode = mode
        self.head = classifier_head(encoder.num_features, 4, head_hidden)

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor | None = None):
        """``(B, C, S, S)`` -> rotated ``(B or 4B, C, S, S)`` and labels ``(B or 4B,)`` in 0..3."""
        if self.mode == "all":
            labels = torch.arange(4, device=images.device).repeat_interleave(len(images))
            return rotate_by_label(images.repeat(4, 1, 1, 1), labels), labels
        labels = balanced_labels(len(images), 4, images.device)
        return rotate_by_label(images, labels), labels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(inputs))

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets), {"accuracy": accuracy(outputs, targets)}

    def previews(self, inputs, targets, outputs):
        """Rows = 0, 90, 180, 270 degrees: up to 8 images each as fed to the encoder, with their label."""
        rows = [inputs[targets == k][:8] for k in range(4)]
        n = min(len(r) for r in rows)
        if n == 0:
            return {}
        labelled = [label_each(rows[k][:n], [f"{90 * k}"] * n) for k in range(4)]
        return {"rotation/rows_0_90_180_270": torch.stack(labelled)}
