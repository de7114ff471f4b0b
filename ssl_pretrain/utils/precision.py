"""Numeric precision and memory layout of the training step: fp32, bf16 autocast, fp16 autocast + scaler.

``trainer.precision``: ``auto`` is bf16 on a CUDA device that supports it natively, fp16 (with a gradient
scaler) on an older GPU, bf16 on a CPU with native bf16 instructions (AVX512-BF16 or AMX, as PyTorch reports
them) and fp32 on any other CPU, where bf16 is emulated and far slower than fp32.
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
    """How the forward pass and loss run: ``dtype`` None is plain fp32. With fp16, ``scaler`` scales the loss
    and ``skipped`` counts, on the device, the steps it skipped for inf/NaN gradients."""

    name: str
    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    skipped: torch.Tensor | None = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()`` and ``optimizer.step()``, through the gradient scaler for fp16.

        With a fused optimizer (:attr:`needs_fused_optimizer`) the scaler hands the inf/NaN check to the
        optimizer's kernel, which skips the update there: no value is read back. Any other optimizer makes the
        scaler read its inf/NaN flag on the host every step."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        # The scaler's inf/NaN flags of this step (GradScaler keeps them per optimizer until update()):
        # added on the device, read only when metrics are written.
        flags = self.scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values()
        skipped = sum(flag.to(torch.long) for flag in flags)
        self.skipped = skipped if self.skipped is None else self.skipped + skipped
        self.scaler.update()

    @property
    def needs_fused_optimizer(self) -> bool:
        """fp16's scaler skips steps without a host wait only with a fused optimizer."""
        return self.scaler is not None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), as PyTorch detects it. Without
    them oneDNN emulates bf16 and autocast runs several times slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def auto_precision(device: torch.device) -> str:
    """What ``trainer.precision=auto`` picks on ``device``."""
    if device.type == "cuda":
        # Native bf16 only (Ampere and newer): V100s and T4s emulate it, far slower than fp16 + scaler.
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def describe_precision(name: str, device: torch.device) -> str:
    """One line saying which numeric path runs and why, e.g. ``precision: bf16 autocast (auto: ...)``."""
    chosen = auto_precision(device) if name == "auto" else name
    if device.type == "cpu":
        native = "native bf16 on this CPU" if cpu_has_native_bf16() else "no native bf16 on this CPU"
    else:
        native = f"{device.type} device"
    how = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + gradient scaler"}[chosen]
    return f"precision: {how} ({'auto, ' if name == 'auto' else ''}{native})"


def announce_precision(name: str, device: torch.device, what: str) -> None:
    """Print which numeric path ``what`` (pretraining, fine-tuning, ...) runs in (stdout, like the run
    directory: stderr is kept for warnings and errors)."""
    print(f"{what}: {describe_precision(name, device)}", flush=True)


def resolve_precision(name: str, device: torch.device, warn: bool = True) -> Precision:
    """The precision ``trainer.precision=name`` means on ``device``; with ``warn``, bf16 or fp16 asked for
    on a CPU that emulates it is said to be slow."""
    if name == "auto":
        name = auto_precision(device)
    if name == "fp32":
        return Precision(name, device.type, None, None)
    native = cpu_has_native_bf16() if name == "bf16" else getattr(torch.cpu, "_is_amx_fp16_supported", bool)()
    if device.type == "cpu" and warn and not native:
        print(
            f"note: trainer.precision={name} on a CPU without native {name}: autocast there is often much slower "
            "than fp32",
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
