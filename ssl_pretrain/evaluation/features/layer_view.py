"""Multi-layer probe features: every named stage average-pooled to about the same number of values.

Following Goyal et al. (2019), a stage with ``C`` channels on an ``h x w`` map is average-pooled to
``k x k`` with ``k = min(h, floor(sqrt(layer_dim / C)))`` and flattened, so early wide maps and late
narrow ones give comparable feature sizes (about ``layer_dim`` values, 9216 by default). ``pooled`` is
the last stage under global average pooling, the encoder's own output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import Encoder

POOLED = "pooled"


def available_layers(encoder: Encoder) -> list[str]:
    """The layer names a multi-layer probe accepts: the encoder's stages, then ``pooled``."""
    return [*encoder.stage_names, POOLED]


class LayerView(nn.Module):
    """``forward_layers``: images ``(B, C, S, S)`` -> ``{layer: (B, D_layer)}`` for the chosen layers."""

    def __init__(self, encoder: Encoder, layers: list[str], layer_dim: int, image_size: int):
        super().__init__()
        self.encoder = encoder
        self.layers = list(layers)
        self.layer_dim = layer_dim
        self.image_size = image_size
        self.grid = self._grid_sizes(image_size)

    def _grid_sizes(self, image_size: int) -> dict[str, int]:
        stages = [name for name in self.layers if name != POOLED]
        was_training = self.encoder.training
        with torch.no_grad():
            device = self.encoder.mean.device
            probe = torch.zeros(1, self.encoder.spec.in_channels, image_size, image_size, device=device)
            maps = self.encoder.eval().forward_stages(probe, stages) if stages else {}
        self.encoder.train(was_training)
        grid = {}
        for name, m in maps.items():
            channels, height = m.shape[1], min(m.shape[2], m.shape[3])
            grid[name] = max(1, min(height, math.isqrt(self.layer_dim // channels)))
        return grid

    @property
    def layer(self) -> str:
        return ",".join(self.layers)

    @property
    def pooling(self) -> str:
        return f"each layer average-pooled to about {self.layer_dim} values (Goyal et al. 2019)"

    def pooling_of(self, layer: str) -> str:
        if layer == POOLED:
            return "global average pooling of the last stage"
        k = self.grid[layer]
        return f"average pooling to {k}x{k}"

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        last = self.encoder.stage_names[-1]
        wanted = [name for name in self.layers if name != POOLED]
        if POOLED in self.layers and last not in wanted:
            wanted.append(last)
        maps = self.encoder.forward_stages(x, wanted)
        out = {}
        for name in self.layers:
            if name == POOLED:
                out[name] = maps[last].mean(dim=(2, 3))
            else:
                out[name] = F.adaptive_avg_pool2d(maps[name], self.grid[name]).flatten(1)
        return out
