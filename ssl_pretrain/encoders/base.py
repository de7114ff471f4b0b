"""The encoder interface every backbone is wrapped in: a trunk split into named stages.

An :class:`Encoder` takes images in ``[0, 1]`` and normalises them itself (the mean and std are
non-persistent buffers, so the saved ``state_dict`` is the plain trunk's). It gives

- ``forward_features(x)``: the globally average-pooled feature vector, shape ``(B, num_features)``;
- ``forward_stages(x, names)``: named intermediate feature maps, each ``(B, C_s, H_s, W_s)``;
- ``record_downsampling()``: a context that records, for every resolution-halving module, the
  input size and channels and (for max-pooling) the argmax indices, which decoders mirror.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn


class IndexedMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that keeps the argmax indices of its last call while ``keep_indices`` is set.

    It has no parameters, so swapping it in for a torchvision model's ``MaxPool2d`` keeps the
    ``state_dict`` identical.
    """

    keep_indices: bool = False
    last_indices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.keep_indices:
            return super().forward(x)
        out, self.last_indices = F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, return_indices=True
        )
        return out


@dataclass
class DownsampleRecord:
    """What one resolution-halving module saw in one forward pass."""

    module: nn.Module
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    indices: torch.Tensor | None = None

    @property
    def is_max_pool(self) -> bool:
        return isinstance(self.module, IndexedMaxPool2d)


@dataclass
class TrunkParts:
    """What a backbone factory returns: the trunk module and how to walk it.

    ``stages`` are (name, modules run in order) covering the whole trunk; ``downsamplers`` are
    the modules that halve the spatial size, in forward order.
    """

    trunk: nn.Module
    stages: list[tuple[str, list[nn.Module]]]
    downsamplers: list[nn.Module]
    num_features: int
    torchvision_name: str | None = None
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EncoderSpec:
    """What rebuilds an encoder (``encoder.yaml``, stored in checkpoints and classifiers as a plain mapping)."""

    backbone: str
    options: dict
    in_channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    num_features: int
    stage_names: list[str]
    torchvision_model: str | None = None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> EncoderSpec:
        """From a stored mapping; extra keys (notes written beside it) are ignored, a missing one is an error."""
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names - set(data) if n != "torchvision_model")
        if missing:
            raise KeyError(f"encoder spec lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


class Encoder(nn.Module):
    """Normalisation + trunk. Input ``(B, C, H, W)`` float in ``[0, 1]``."""

    def __init__(self, parts: TrunkParts, mean: list[float], std: list[float], spec: EncoderSpec):
        super().__init__()
        self.trunk = parts.trunk
        self.num_features = parts.num_features
        self.stage_names = [name for name, _ in parts.stages]
        self.spec = spec
        self._stages = parts.stages
        self._downsamplers = parts.downsamplers
        self._records: list[DownsampleRecord] | None = None
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        for module in self._downsamplers:
            module.register_forward_hook(self._record_hook)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_stages(self, x: torch.Tensor, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Feature maps of the requested stages (all when ``names`` is None); stops after the last asked."""
        wanted = set(self.stage_names if names is None else names)
        unknown = wanted - set(self.stage_names)
        if unknown:
            raise KeyError(f"unknown stage(s) {sorted(unknown)}; this encoder has {self.stage_names}")
        out = {}
        x = self.normalize(x)
        for name, modules in self._stages:
            for module in modules:
                x = module(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def stage_modules(self, name: str) -> list[nn.Module]:
        """The modules stage ``name`` runs, in order (its output is the last one's)."""
        return dict(self._stages)[name]

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, ``(B, num_features, h, w)``."""
        return self.forward_stages(x, [self.stage_names[-1]])[self.stage_names[-1]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled features, ``(B, num_features)``."""
        return self.forward_maps(x).mean(dim=(2, 3))

    forward = forward_features

    @contextlib.contextmanager
    def record_downsampling(self) -> Iterator[list[DownsampleRecord]]:
        """Within the context, each forward appends one record per downsampling module (in order)."""
        records: list[DownsampleRecord] = []
        self._records = records
        pools = [m for m in self._downsamplers if isinstance(m, IndexedMaxPool2d)]
        for pool in pools:
            pool.keep_indices = True
        try:
            yield records
        finally:
            self._records = None
            for pool in pools:
                pool.keep_indices = False
                pool.last_indices = None

    def _record_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self._records is None:
            return
        x = inputs[0]
        indices = module.last_indices if isinstance(module, IndexedMaxPool2d) else None
        self._records.append(DownsampleRecord(module, x.shape[1], output.shape[1], tuple(x.shape[-2:]), indices))

    @property
    def max_pool_only(self) -> bool:
        """True when every downsampling step is a max-pool (so a decoder can max-unpool all of them)."""
        return bool(self._downsamplers) and all(isinstance(m, IndexedMaxPool2d) for m in self._downsamplers)
