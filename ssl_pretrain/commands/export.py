"""``ssl-pretrain export``: a run's encoder as ``encoder.pt`` + ``encoder.yaml`` (torchvision's layout), or as
an ONNX graph checked against PyTorch by ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..encoders.export import export_encoder
from ..errors import ConfigError
from ..evaluation.shared.encoder_source import load_encoder


@dataclass
class Exported:
    """Where the encoder went; for ONNX, how far ONNX Runtime's output is from PyTorch's (None: not run)."""

    path: Path
    format: str
    difference: float | None = None


def run_export(config: Config, out: str) -> Exported:
    """Export the encoder of ``evaluation.encoder`` to ``out`` in ``export.format``."""
    if config.evaluation.encoder is None:
        raise ConfigError("evaluation.encoder", "is required: the run directory, encoder.pt or checkpoint to export")
    encoder = load_encoder(Path(config.evaluation.encoder).expanduser())
    if config.export.format == "onnx":
        from ..encoders.onnx import export_onnx

        path, difference = export_onnx(encoder, Path(out))
        return Exported(path, "onnx", difference)
    return Exported(export_encoder(encoder, Path(out)), "torchvision")


def format_export(exported: Exported) -> str:
    if exported.format != "onnx":
        return f"encoder written to {exported.path}"
    checked = "not run" if exported.difference is None else f"onnxruntime matches PyTorch to {exported.difference:.1e}"
    return f"ONNX encoder written to {exported.path} ({checked})"
