"""Pretext-task registry: config name -> task class. Adding a task = one module + one line here."""

from __future__ import annotations

from .base import PretextTask
from .dae import DenoisingAutoencoder

TASKS: dict[str, type[PretextTask]] = {
    "dae": DenoisingAutoencoder,
}

__all__ = ["TASKS", "PretextTask", "DenoisingAutoencoder"]
