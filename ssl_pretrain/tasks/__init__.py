"""Pretext-task registry: config name -> task class. Adding a task = one module + one line here."""

from __future__ import annotations

from .base import PretextTask
from .dae import DenoisingAutoencoder
from .exemplar import Exemplar
from .multi import MultiTask
from .relative_patch import RelativePatchLocation
from .rotation import RotationPrediction

TASKS: dict[str, type[PretextTask]] = {
    "dae": DenoisingAutoencoder,
    "exemplar": Exemplar,
    "relative_patch": RelativePatchLocation,
    "rotation": RotationPrediction,
    "multi": MultiTask,
}

__all__ = [
    "TASKS",
    "DenoisingAutoencoder",
    "Exemplar",
    "MultiTask",
    "PretextTask",
    "RelativePatchLocation",
    "RotationPrediction",
]
