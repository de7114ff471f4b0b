"""Encoders: a factory returning :class:`TrunkParts` per backbone, registered by name in
:data:`ssl_pretrain.registry.ENCODERS` (or by ``register_encoder`` / an ``ssl_pretrain.encoders`` entry point).

Each factory's keyword-only parameters are the ``model.*`` options a config may set.
"""

from __future__ import annotations

from ..registry import ENCODERS
from .base import DownsampleRecord, Encoder, EncoderSpec, IndexedMaxPool2d, TrunkParts
from .wrap import wrap_trunk


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
    spec = EncoderSpec(
        backbone=backbone,
        options=dict(options),
        in_channels=in_channels,
        image_size=image_size,
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        num_features=parts.num_features,
        stage_names=[name for name, _ in parts.stages],
        torchvision_model=parts.torchvision_name,
    )
    return Encoder(parts, spec.mean, spec.std, spec)


def encoder_from_spec(spec: EncoderSpec | dict) -> Encoder:
    """Rebuild an (untrained) encoder from its spec, or the ``encoder.yaml`` mapping of one."""
    spec = spec if isinstance(spec, EncoderSpec) else EncoderSpec.from_dict(spec)
    return build_encoder(spec.backbone, spec.options, spec.in_channels, spec.image_size, spec.mean, spec.std)


__all__ = [
    "ENCODERS",
    "DownsampleRecord",
    "Encoder",
    "EncoderSpec",
    "IndexedMaxPool2d",
    "TrunkParts",
    "build_encoder",
    "encoder_from_spec",
    "wrap_trunk",
]
