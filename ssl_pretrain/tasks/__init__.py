"""Pretext tasks. Adding a task = one module + one entry in :data:`ssl_pretrain.registry.TASKS` (or a
``register_task`` call / an ``ssl_pretrain.tasks`` entry point from your own package)."""

from __future__ import annotations

from ..registry import TASKS
from .base import PretextTask
from .byol import BYOL
from .dae import DenoisingAutoencoder
from .exemplar import Exemplar
from .multi import MultiTask
from .relative_patch import RelativePatchLocation
from .rotation import RotationPrediction
from .vicreg import VICReg

__all__ = [
    "BYOL",
    "TASKS",
    "DenoisingAutoencoder",
    "Exemplar",
    "MultiTask",
    "PretextTask",
    "RelativePatchLocation",
    "RotationPrediction",
    "VICReg",
]
