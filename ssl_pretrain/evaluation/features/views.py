"""Which features of a frozen encoder an evaluation reads: one pooled view, a patch grid, or every layer."""

from __future__ import annotations

import torch

from ...config import ProbeConfig
from ...encoders import Encoder, EncoderSpec, encoder_from_spec
from ...errors import ConfigError
from ...registry import TASKS
from ...tasks.parts.patches import default_geometry
from .feature_view import FeatureView
from .layer_view import LayerView, available_layers


def probe_layers(layers: str | list[str] | None, patch_grid: bool, encoder: Encoder) -> list[str] | None:
    """The layers of ``probe.layers`` (``all``: every stage and ``pooled``), checked against the encoder."""
    if layers is None:
        return None
    known = available_layers(encoder)
    chosen = known if layers == "all" else [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise ConfigError("probe.layers", f"unknown layer(s) {unknown}; this encoder has: all, {', '.join(known)}")
    if patch_grid:
        raise ConfigError("probe.layers", "cannot be combined with probe.patch_grid=true")
    return chosen


def probe_view(
    probe: ProbeConfig, task_grid: dict | None, spec: EncoderSpec, encoder: Encoder
) -> tuple[int, FeatureView | LayerView]:
    """Image size and feature view from ``probe.layers``, ``probe.resize``, ``probe.pool``,
    ``probe.patch_grid``; the grid of the task that trained the encoder (its ``probe_grid``: size, patch,
    gap, per-patch normalisation; ``task_grid``, see :func:`task_grid`), where it has one, is the default."""
    task = task_grid or {}
    size = probe.resize or (task.get("resize") if probe.patch_grid else None) or spec.image_size
    layers = probe_layers(probe.layers, probe.patch_grid, encoder)
    if layers is not None:
        return size, LayerView(encoder, layers, probe.layer_dim, size)
    if not probe.patch_grid:
        return size, FeatureView(encoder, probe.pool)
    try:
        geometry = default_geometry(size, task.get("patch"), task.get("gap"), jitter=0)
    except ValueError as err:
        raise ConfigError("probe.patch_grid", f"{err} (set probe.resize)") from None
    return size, FeatureView(encoder, probe.pool, geometry, bool(task.get("patch_norm", True)))


def task_grid(task_name: str, task_options: dict) -> dict | None:
    """The patch grid of the task that trained the encoder (its ``probe_grid``), if it has one."""
    return TASKS[task_name].probe_grid(task_options) if task_name in TASKS else None


def control_view(view, spec: EncoderSpec, seed: int):
    """The same view over a randomly initialised encoder of the same architecture (seeded)."""
    torch.manual_seed(seed)
    encoder = encoder_from_spec(spec)
    if isinstance(view, LayerView):
        return LayerView(encoder, view.layers, view.layer_dim, view.image_size)
    return FeatureView(encoder, view.pool, view.geometry, view.patch_norm)
