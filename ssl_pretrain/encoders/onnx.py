"""The encoder as an ONNX graph (``export.format=onnx``; the optional ``onnx`` extra): images ``(batch, C, S, S)``
float32 in [0, 1] (the normalisation is inside the graph) -> features ``(batch, D)``, the batch axis dynamic.
Exported with PyTorch's ``torch.export``-based exporter; when onnxruntime is installed the written file is run
on a random batch and compared with PyTorch."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import torch
import yaml

from ..errors import BadInput
from ..utils.files import atomic_write_bytes
from . import Encoder
from .export import export_paths

EXTRA = "pip install 'ssl-pretrain[onnx]' (onnx, onnxscript, onnxruntime)"
ONNX_NOTE = (
    "ONNX: input 'images' (batch, in_channels, image_size, image_size) float32 in [0, 1], normalised inside the "
    "graph; output 'features' (batch, num_features), the globally average-pooled last stage."
)


def export_onnx(encoder: Encoder, out: Path) -> tuple[Path, float | None]:
    """Write ``encoder.onnx`` and its ``encoder.yaml``; returns the path and onnxruntime's largest absolute
    difference from PyTorch on a random batch of 5 (None without onnxruntime)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise BadInput(f"export.format=onnx needs the onnx extra: {EXTRA}") from None
    path, spec_path = export_paths(out, ".onnx")
    encoder = copy.deepcopy(encoder).cpu().eval()  # the caller's encoder stays on its device, in its mode
    spec = encoder.spec
    example = torch.rand(2, spec.in_channels, spec.image_size, spec.image_size)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports each stage on stdout
        program = torch.onnx.export(
            encoder, (example,), input_names=["images"], output_names=["features"],
            dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False,
        )  # fmt: skip
    atomic_write_bytes(path, program.model_proto.SerializeToString())
    atomic_write_bytes(spec_path, yaml.safe_dump(dict(spec.to_dict(), loading=ONNX_NOTE), sort_keys=False).encode())
    return path, onnxruntime_difference(encoder, path)


def onnxruntime_difference(encoder: Encoder, path: Path, batch: int = 5) -> float | None:
    """Largest absolute difference between onnxruntime's and PyTorch's features on a random batch."""
    try:
        import onnxruntime
    except ImportError:
        return None
    spec = encoder.spec
    x = torch.rand(
        batch, spec.in_channels, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0)
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        theirs = encoder(x).numpy()
    return float(abs(ours - theirs).max())
