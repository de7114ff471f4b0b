"""A decoder that mirrors an encoder's downsampling steps, with selectable upsampling.

Each encoder step that halved the resolution (recorded by ``Encoder.record_downsampling``)
becomes, in reverse order, ``conv3x3 -> BN -> ReLU`` to that step's output channels followed by
an upsampling back to the step's input size:

- ``nearest``: nearest-neighbour unpooling, each value copied into its 2x2 block;
- ``bed_of_nails``: each value in the top-left corner of its 2x2 block, zeros elsewhere;
- ``max_unpool``: each value at the position the encoder's max-pool took it from;
- ``transposed``: a learned stride-2 transposed convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import DownsampleRecord

UPSAMPLING = ("nearest", "bed_of_nails", "max_unpool", "transposed")


def _fit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop or replicate-pad the last two dims of ``x`` to ``size``."""
    x = x[..., : size[0], : size[1]]
    pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def nearest_unpool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w) -> (B, C, *size)``: each value fills its 2x2 block.

    ``F.interpolate(mode="nearest")`` at scale 2 computes exactly that, with a fused backward (a copy by
    ``repeat_interleave`` costs a reduction over an expanded tensor in backward, ~10% of a DAE step).
    """
    return _fit(F.interpolate(x, scale_factor=2, mode="nearest"), size)


def bed_of_nails_unpool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w) -> (B, C, *size)``: value at the top-left of each 2x2 block, zeros elsewhere."""
    out = x.new_zeros(*x.shape[:-2], *size)
    rows, cols = min(x.shape[-2], (size[0] + 1) // 2), min(x.shape[-1], (size[1] + 1) // 2)
    out[..., : 2 * rows : 2, : 2 * cols : 2] = x[..., :rows, :cols]
    return out


def max_unpool(x: torch.Tensor, record: DownsampleRecord) -> torch.Tensor:
    """``(B, C, h, w) -> (B, C, H, W)``: values put back at the encoder's saved argmax indices."""
    pool = record.module
    return F.max_unpool2d(x, record.indices, pool.kernel_size, pool.stride, pool.padding, output_size=record.in_size)


class UpsampleStep(nn.Module):
    """conv3x3-BN-ReLU to the encoder step's output channels, then upsample to its input size."""

    def __init__(self, in_channels: int, out_channels: int, mode: str):
        super().__init__()
        self.mode = mode
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.transposed = nn.ConvTranspose2d(out_channels, out_channels, 3, 2, 1) if mode == "transposed" else None

    def forward(self, x: torch.Tensor, record: DownsampleRecord) -> torch.Tensor:
        x = self.conv(x)
        if self.mode == "nearest":
            return nearest_unpool(x, record.in_size)
        if self.mode == "bed_of_nails":
            return bed_of_nails_unpool(x, record.in_size)
        if self.mode == "max_unpool":
            return max_unpool(x, record)
        return _fit(self.transposed(x), record.in_size)


class MirrorDecoder(nn.Module):
    """Feature map ``(B, C_last, h, w)`` -> reconstruction ``(B, image_channels, H, W)``."""

    def __init__(self, records: list[DownsampleRecord], feature_channels: int, image_channels: int, mode: str):
        super().__init__()
        steps, channels = [], feature_channels
        for record in reversed(records):
            steps.append(UpsampleStep(channels, record.out_channels, mode))
            channels = record.out_channels
        self.steps = nn.ModuleList(steps)
        self.out = nn.Conv2d(channels, image_channels, 3, 1, 1)

    def forward(self, maps: torch.Tensor, records: list[DownsampleRecord]) -> torch.Tensor:
        x = maps
        for step, record in zip(self.steps, reversed(records), strict=True):
            x = step(x, record)
        return self.out(x)
