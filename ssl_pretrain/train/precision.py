"""Numeric precision and memory layout of the training step: fp32, bf16 autocast, fp16 autocast + scaler.

``trainer.precision``: ``auto`` is bf16 on a CUDA device that supports it, fp16 (with a gradient
scaler) on an older GPU and fp32 on CPU, where bf16 matmuls are often far slower than fp32.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """How the forward pass and loss run: ``dtype`` None is plain fp32."""

    name: str
    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()`` and ``optimizer.step()``, through the gradient scaler for fp16."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def resolve_precision(name: str, device: torch.device, warn: bool = True) -> Precision:
    """The precision ``trainer.precision=name`` means on ``device``."""
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name == "fp32":
        return Precision(name, device.type, None, None)
    if device.type == "cpu" and warn:
        print(
            f"note: trainer.precision={name} on CPU: autocast matmuls there are often much slower than fp32",
            file=sys.stderr,
        )
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(name, device.type, DTYPES[name], scaler)


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """4-D image batches in channels-last layout when asked; other tensors unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def use_channels_last(setting: bool | None, device: torch.device) -> bool:
    """``trainer.channels_last``: null means on CUDA only."""
    return device.type == "cuda" if setting is None else setting
