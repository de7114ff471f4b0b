"""Which features of a frozen encoder an evaluation reads: one pooled view, a patch grid, or every layer."""

from __future__ import annotations

import torch

from ..config import Config
from ..encoders import Encoder, encoder_from_spec
from ..errors import ConfigError
from ..registry import TASKS
from ..tasks.patches import default_geometry
from .feature_view import FeatureView
from .layer_view import LayerView, available_layers


def probe_layers(config: Config, encoder: Encoder) -> list[str] | None:
    """The layers of ``probe.layers`` (``all``: every stage and ``pooled``), checked against the encoder."""
    layers = config.probe.layers
    if layers is None:
        return None
    known = available_layers(encoder)
    chosen = known if layers == "all" else [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise ConfigError("probe.layers", f"unknown layer(s) {unknown}; this encoder has: all, {', '.join(known)}")
    if config.probe.patch_grid:
        raise ConfigError("probe.layers", "cannot be combined with probe.patch_grid=true")
    return chosen


def probe_view(config: Config, spec: dict, encoder: Encoder) -> tuple[int, FeatureView | LayerView]:
    """Image size and feature view from ``probe.layers``, ``probe.resize``, ``probe.pool``,
    ``probe.patch_grid``; the grid of the task that trained the encoder (its ``probe_grid``: size, patch,
    gap, per-patch normalisation), where it has one, is the default grid."""
    task = (TASKS[config.task.name].probe_grid(config.task.options) if config.task.name in TASKS else None) or {}
    size = config.probe.resize or (task.get("resize") if config.probe.patch_grid else None) or spec["image_size"]
    layers = probe_layers(config, encoder)
    if layers is not None:
        return size, LayerView(encoder, layers, config.probe.layer_dim, size)
    if not config.probe.patch_grid:
        return size, FeatureView(encoder, config.probe.pool)
    try:
        geometry = default_geometry(size, task.get("patch"), task.get("gap"), jitter=0)
    except ValueError as err:
        raise ConfigError("probe.patch_grid", f"{err} (set probe.resize)") from None
    return size, FeatureView(encoder, config.probe.pool, geometry, bool(task.get("patch_norm", True)))


def control_view(view, spec: dict, seed: int):
    """The same view over a randomly initialised encoder of the same architecture (seeded)."""
    torch.manual_seed(seed)
    encoder = encoder_from_spec(spec)
    if isinstance(view, LayerView):
        return LayerView(encoder, view.layers, view.layer_dim, view.image_size)
    return FeatureView(encoder, view.pool, view.geometry, view.patch_norm)
