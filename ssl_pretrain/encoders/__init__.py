"""Encoder registry: config name -> factory returning :class:`TrunkParts`.

Each factory's keyword-only parameters are the ``model.*`` options a config may set.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import DownsampleRecord, Encoder, IndexedMaxPool2d, TrunkParts
from .small_resnet import small_resnet
from .torchvision_backbones import efficientnet_b0, mobilenet_v2, resnet18, resnet50, vgg11_bn

ENCODERS: dict[str, Callable[..., TrunkParts]] = {
    "small_resnet": small_resnet,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg11_bn": vgg11_bn,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_b0": efficientnet_b0,
}


def build_encoder(
    backbone: str,
    options: dict,
    in_channels: int,
    image_size: int,
    mean: list[float],
    std: list[float],
) -> Encoder:
    """Build a registered backbone wrapped as an :class:`Encoder` with its ``encoder.yaml`` spec."""
    parts = ENCODERS[backbone](in_channels, **options)
    spec = {
        "backbone": backbone,
        "options": dict(options),
        "in_channels": in_channels,
        "image_size": image_size,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "num_features": parts.num_features,
        "stage_names": [name for name, _ in parts.stages],
        "torchvision_model": parts.torchvision_name,
    }
    return Encoder(parts, spec["mean"], spec["std"], spec)


def encoder_from_spec(spec: dict) -> Encoder:
    """Rebuild an (untrained) encoder from an ``encoder.yaml`` mapping."""
    return build_encoder(
        spec["backbone"], spec["options"], spec["in_channels"], spec["image_size"], spec["mean"], spec["std"]
    )


__all__ = [
    "ENCODERS",
    "DownsampleRecord",
    "Encoder",
    "IndexedMaxPool2d",
    "TrunkParts",
    "build_encoder",
    "encoder_from_spec",
]
