"""What a probe extracts from a frozen encoder: which pooling of the last stage, of which input.

- ``pool = 1``: global average pooling, ``(B, D)``; ``pool = k``: the last stage average-pooled to a
  ``k x k`` grid and flattened, ``(B, D * k * k)`` (a linear probe on spatially pooled features, as in
  Goyal et al. 2019; more values, same linear classifier).
- ``geometry``: the image is cut into a 3x3 patch grid (no jitter), each patch encoded (normalised per
  patch if the pretext task did so) and the 9 feature vectors averaged: Doersch et al.'s protocol for
  encoders trained by relative patch location, which have only ever seen patches.
- :class:`RawPixels`: the control every probe should beat, the normalised pixels themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import Encoder
from ...tasks.parts.patches import PatchGeometry, extract_patches, grid_origins
from ...tasks.relative_patch import normalise_patches


class FeatureView(nn.Module):
    """``forward_features``: images ``(B, C, S, S)`` in [0, 1] -> probe features ``(B, D * pool**2)``;
    ``forward_layers``: the same as ``{layer: features}`` (the interface shared with :class:`LayerView`)."""

    def __init__(self, encoder: Encoder, pool: int = 1, geometry: PatchGeometry | None = None, patch_norm: bool = True):
        super().__init__()
        self.encoder = encoder
        self.pool = pool
        self.geometry = geometry
        self.patch_norm = patch_norm

    @property
    def layer(self) -> str:
        name = "pooled" if self.pool == 1 else f"last_stage_{self.pool}x{self.pool}"
        return name if self.geometry is None else "patch_grid" + ("" if self.pool == 1 else f"_{name}")

    @property
    def pooling(self) -> str:
        spatial = "global average pooling" if self.pool == 1 else f"average pooling to {self.pool}x{self.pool}"
        if self.geometry is None:
            return f"{spatial} of the last stage"
        return f"mean over a 3x3 patch grid (no jitter) of each patch's last stage, {spatial}"

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == 1:
            return self.encoder.forward_features(x)
        return F.adaptive_avg_pool2d(self.encoder.forward_maps(x), self.pool).flatten(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.geometry is None:
            return self.pooled(x)
        origins = grid_origins(len(x), self.geometry, x.device, jitter=False)
        patches = extract_patches(x, origins, self.geometry.patch)
        if self.patch_norm:
            patches = normalise_patches(patches, self.encoder.mean, self.encoder.std)
        return self.pooled(patches.flatten(0, 1)).view(len(x), 9, -1).mean(dim=1)

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.layer: self.forward_features(x)}

    def pooling_of(self, layer: str) -> str:
        return self.pooling


class RawPixels(nn.Module):
    """Normalised pixels as features, ``(B, C, H, W) -> {"pixels": (B, C*H*W)}``."""

    layer = "pixels"
    pooling = "none (pixels)"

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.layer: x.flatten(1)}

    def pooling_of(self, layer: str) -> str:
        return self.pooling
