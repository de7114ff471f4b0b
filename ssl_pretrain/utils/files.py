"""Checkpoints: one flat dict with fixed keys, written atomically, read with ``weights_only=True``.

Keys: ``format``, ``config`` (resolved), ``encoder_spec``, ``model`` (the task's state_dict),
``optimizer``, ``scheduler``, ``step``, ``epoch``, ``batch_in_epoch``, ``rng``, ``metrics``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import BadInput

FORMAT = "ssl_pretrain.checkpoint/1"
REQUIRED_KEYS = ("format", "config", "encoder_spec", "model", "step")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def safe_torch_load(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for missing, truncated or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0]
        raise BadInput(
            f"{what} {path} was refused: it holds objects other than tensors and plain data, "
            f"which could run code when loaded ({reason[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadInput(f"{what} {path} is truncated or not a PyTorch file ({reason[:160]})") from None


def load_checkpoint(path: Path) -> dict:
    """Load and sanity-check an ssl_pretrain training checkpoint."""
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS) or ckpt["format"] != FORMAT:
        raise BadInput(f"checkpoint {path} is not an ssl_pretrain training checkpoint (format {FORMAT})")
    return ckpt


def load_state_strict(module: torch.nn.Module, state: dict, source: Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        result = _describe_mismatch(module.state_dict(), state)
        raise BadInput(f"{source} does not match {what}: {result or str(err).splitlines()[0]}") from None


def _describe_mismatch(expected: dict, given: dict) -> str:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [k for k in expected if k in given and tuple(expected[k].shape) != tuple(given[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        shown = f"{k}: {tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        parts.append(f"{len(shapes)} shape mismatches (e.g. {shown})")
    return "; ".join(parts)


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes in ``state_dict`` order: equal iff bit-identical
    (two encoders of one digest compute the same features)."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
