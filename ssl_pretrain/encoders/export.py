"""Encoder export: ``encoder.pt`` (the trunk's state_dict, plain CPU tensors) + ``encoder.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import BadInput
from ..utils.files import atomic_torch_save, atomic_write_bytes, load_state_strict, safe_torch_load
from . import Encoder, encoder_from_spec

LOADING_NOTE = (
    "torchvision backbone: torchvision.models.<torchvision_model>(weights=None), classifier (fc/classifier) "
    "replaced by nn.Identity(); if in_channels != 3 or options.small_input, rebuild the first conv as "
    "ssl_pretrain.encoders does; then load_state_dict(torch.load('encoder.pt', weights_only=True), strict=True). "
    "Inputs are images in [0, 1] normalised with mean/std below."
)


MODEL_SUFFIXES = (".pt", ".pth", ".onnx", ".yaml", ".yml", ".bin", ".safetensors", ".ckpt")


def export_paths(out: Path, suffix: str = ".pt") -> tuple[Path, Path]:
    """``out`` is a file ending in ``suffix`` (the spec goes next to it as ``.yaml``) or a directory (then
    ``encoder<suffix>`` and ``encoder.yaml`` in it)."""
    out = Path(out)
    if out.suffix == suffix:
        return out, out.with_suffix(".yaml")
    if out.suffix.lower() in MODEL_SUFFIXES and not out.is_dir():
        raise BadInput(f"export: {out} is named as a {out.suffix} file but this export writes {suffix}; "
                       f"name a {suffix} file or a folder")  # fmt: skip
    return out / f"encoder{suffix}", out / "encoder.yaml"


def export_encoder(encoder: Encoder, out: Path) -> Path:
    """Write the encoder's weights and spec; returns the weights path."""
    weights_path, spec_path = export_paths(out)
    state = {k: v.detach().cpu().clone() for k, v in encoder.trunk.state_dict().items()}
    atomic_torch_save(state, weights_path)
    spec = dict(encoder.spec.to_dict(), loading=LOADING_NOTE)
    atomic_write_bytes(spec_path, yaml.safe_dump(spec, sort_keys=False).encode())
    return weights_path


def load_exported_encoder(weights_path: Path) -> Encoder:
    """Rebuild an encoder from ``encoder.pt`` and its ``encoder.yaml`` (same stem, or encoder.yaml beside it)."""
    weights_path = Path(weights_path)
    spec_path = weights_path.with_suffix(".yaml")
    if not spec_path.is_file():
        spec_path = weights_path.parent / "encoder.yaml"
    if not spec_path.is_file():
        raise BadInput(f"{weights_path}: no {weights_path.with_suffix('.yaml').name} or encoder.yaml beside it")
    try:
        spec = yaml.safe_load(spec_path.read_text())
        encoder = encoder_from_spec(spec)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise BadInput(f"{spec_path} is not a valid encoder spec ({err})") from None
    state = safe_torch_load(weights_path, "encoder weights")
    if not isinstance(state, dict):
        raise BadInput(f"encoder weights {weights_path} are not a state_dict")
    load_state_strict(encoder.trunk, state, weights_path, f"the {spec['backbone']} encoder in {spec_path.name}")
    return encoder
