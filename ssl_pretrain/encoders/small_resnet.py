"""A ResNet for small (28-32 px) inputs: 3x3 stem, no max-pool in the stem, selectable width and depth.

Stage ``i`` holds ``blocks[i]`` basic blocks of width ``widths[i]``; every stage after the first
halves the resolution, by a stride-2 first block (``downsample='stride'``) or by a 2x2 max-pool
in front of the stage (``downsample='maxpool'``, needed by a max-unpooling decoder).
Normalisation is batch norm, or group norm (``norm='group'``: no batch statistics, so a data-parallel
run without synchronised batch norm computes exactly what one process with the global batch does).
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

from ..errors import check_option
from .base import IndexedMaxPool2d, TrunkParts


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``batch``: BatchNorm2d; ``group``: GroupNorm with up to 8 groups (a divisor of ``channels``)."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.BatchNorm2d(channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection. ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm_layer(norm, out_channels)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, in_channels: int, widths: list[int], blocks: list[int], downsample: str, norm: str):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), norm_layer(norm, widths[0]), nn.ReLU(inplace=True)
        )
        self.downsamplers: list[nn.Module] = []
        channels = widths[0]
        for i, (width, depth) in enumerate(zip(widths, blocks, strict=True)):
            layers: list[nn.Module] = []
            stride = 1
            if i > 0 and downsample == "maxpool":
                pool = IndexedMaxPool2d(2, 2)
                layers.append(pool)
                self.downsamplers.append(pool)
            elif i > 0:
                stride = 2
            for j in range(depth):
                block = BasicBlock(channels, width, stride if j == 0 else 1, norm)
                if j == 0 and stride == 2:
                    self.downsamplers.append(block)
                layers.append(block)
                channels = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.num_stages = len(widths)


def small_resnet(
    in_channels: int,
    *,
    widths: list[int] = (32, 64, 128),
    blocks: list[int] = (1, 1, 1),
    downsample: Literal["stride", "maxpool"] = "stride",
    norm: Literal["batch", "group"] = "batch",
) -> TrunkParts:
    """Small-input ResNet; defaults cost ~0.1 GFLOP per 28 px image, fast enough for CPU pretraining."""
    check_option(len(widths) >= 1 and all(w > 0 for w in widths), "widths", f"must be positive ints, got {widths}")
    check_option(len(blocks) == len(widths), "blocks", f"needs one entry per width ({len(widths)}), got {blocks}")
    check_option(all(b >= 1 for b in blocks), "blocks", f"must be >= 1, got {blocks}")
    net = SmallResNet(in_channels, list(widths), list(blocks), downsample, norm)
    stages = [("stem", [net.stem])] + [(f"layer{i + 1}", [getattr(net, f"layer{i + 1}")]) for i in range(len(widths))]
    return TrunkParts(net, stages, net.downsamplers, widths[-1])
