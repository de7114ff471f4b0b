"""Any ``nn.Module`` as an :class:`~.base.Encoder`, so the pretext tasks can train a trunk of your own."""

from __future__ import annotations

import torch
from torch import nn

from .base import Encoder, EncoderSpec, TrunkParts


class _AsMaps(nn.Module):
    """Runs ``trunk``; a ``(B, D)`` output becomes a ``(B, D, 1, 1)`` map, a ``(B, D, h, w)`` one stays."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trunk(x)
        return out[:, :, None, None] if out.ndim == 2 else out


def wrap_trunk(
    trunk: nn.Module,
    *,
    in_channels: int,
    image_size: int,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> Encoder:
    """An :class:`Encoder` around ``trunk`` (images ``(B, in_channels, S, S)`` -> maps ``(B, D, h, w)`` or
    features ``(B, D)``), with one stage named ``trunk``; images enter in ``[0, 1]`` and are normalised with
    ``mean``/``std`` (default 0.5 / 0.25 per channel). Works with the tasks that read pooled features
    (rotation, Exemplar, relative patch, multi-task); the DAE needs a registered backbone, whose decoder
    mirrors its downsampling."""
    mean = list(mean) if mean is not None else [0.5] * in_channels
    std = list(std) if std is not None else [0.25] * in_channels
    module = _AsMaps(trunk)
    was_training = trunk.training
    with torch.no_grad():
        num_features = module.eval()(torch.zeros(2, in_channels, image_size, image_size)).shape[1]
    trunk.train(was_training)
    parts = TrunkParts(module, [("trunk", [module])], [], int(num_features))
    spec = EncoderSpec(
        backbone=f"custom:{type(trunk).__name__}",
        options={},
        in_channels=in_channels,
        image_size=image_size,
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        num_features=int(num_features),
        stage_names=["trunk"],
    )
    return Encoder(parts, spec.mean, spec.std, spec)
