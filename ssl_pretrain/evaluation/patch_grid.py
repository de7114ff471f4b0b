"""Whole-image features as the mean of a 3x3 patch grid's features (Doersch et al.'s protocol).

An encoder trained by relative patch location has only ever seen patches; this probes it on what
it was trained on: the image is cut into the same 3x3 grid (no jitter), each patch is encoded
(normalised per patch if the task did so) and the 9 feature vectors are averaged.
"""

from __future__ import annotations

import torch
from torch import nn

from ..encoders import Encoder
from ..tasks.patches import PatchGeometry, extract_patches, grid_origins
from ..tasks.relative_patch import normalise_patches


class PatchGridFeatures(nn.Module):
    """``forward_features``: images ``(B, C, S, S)`` in [0, 1] -> mean patch features ``(B, D)``."""

    def __init__(self, encoder: Encoder, geometry: PatchGeometry, patch_norm: bool):
        super().__init__()
        self.encoder = encoder
        self.geometry = geometry
        self.patch_norm = patch_norm

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        origins = grid_origins(len(x), self.geometry, x.device, jitter=False)
        patches = extract_patches(x, origins, self.geometry.patch)
        if self.patch_norm:
            patches = normalise_patches(patches, self.encoder.mean, self.encoder.std)
        features = self.encoder.forward_features(patches.flatten(0, 1))
        return features.view(len(x), 9, -1).mean(dim=1)
