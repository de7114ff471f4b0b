"""Numeric precision and memory layout of the training step: fp32, bf16 autocast, fp16 autocast + scaler.

``trainer.precision``: ``auto`` is bf16 on a CUDA device that supports it, fp16 (with a gradient
scaler) on an older GPU and fp32 on CPU, where bf16 matmuls are often far slower than fp32.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

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
            # Native bf16 only (Ampere and newer): V100s and T4s emulate it, far slower than fp16 + scaler.
            name = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
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


def configure_cuda(device: torch.device, cudnn_benchmark: bool, tf32: bool) -> None:
    """On CUDA: let cuDNN time its convolution algorithms for the (fixed) input shapes, and let fp32 matmuls
    and convolutions use TF32 tensor cores (``trainer.cudnn_benchmark``, ``trainer.tf32``). No-op on CPU."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def channels_last_hazard(module: nn.Module) -> str | None:
    """A layer that oneDNN's CPU kernels mishandle in channels-last layout, or None.

    The backward of a 1x1 convolution with stride > 1 and fewer input channels than the kernel's channel
    block (16 with AVX-512) writes past its workspace: heap corruption or wrong weight gradients
    (oneDNN issue #6035, reproduced here with torch 2.14: 4 -> 8 and 8 -> 16 channels crash, 16 -> 32 not).
    """
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and max(layer.stride) > 1:
            if layer.in_channels // layer.groups < 16:
                return f"{name} (1x1, stride {max(layer.stride)}, {layer.in_channels} input channels)"
    return None


def resolve_channels_last(setting: bool | None, device: torch.device, module: nn.Module) -> bool:
    """``trainer.channels_last``: null = on, unless on CPU a layer hits the oneDNN bug above; true on
    such a model is refused rather than risk corrupted memory."""
    if setting is False:
        return False
    hazard = channels_last_hazard(module) if device.type == "cpu" else None
    if hazard is None:
        return True
    if setting:
        raise ConfigError(
            "trainer.channels_last",
            f"true is unsafe on CPU for this model: {hazard} hits a oneDNN bug in channels-last "
            "backward (issue #6035); use null (picks the safe layout) or false",
        )
    return False


def to_memory_format(x, channels_last: bool):
    """4-D image batches in channels-last layout when asked; other tensors unchanged. A mapping of
    tensors (a multi-task batch) is converted entry by entry."""
    if isinstance(x, dict):
        return {key: to_memory_format(value, channels_last) for key, value in x.items()}
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x
