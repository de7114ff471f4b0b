"""A pretraining run directory as the API hands it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..encoders import Encoder
from ..errors import BadInput
from ..evaluation.shared.encoder_source import load_encoder


@dataclass
class Run:
    """A pretraining run directory: its config, its figures and its encoder."""

    directory: Path

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run at ``path`` (a directory holding ``config.yaml``)."""
        directory = Path(path).expanduser()
        if not (directory / "config.yaml").is_file():
            raise BadInput(f"run: {directory} is not a run directory (no config.yaml)")
        return cls(directory)

    @property
    def config(self) -> Config:
        return load_config(self.directory / "config.yaml")

    @property
    def metrics(self) -> dict:
        """``metrics.json``: steps, images/s, final pretext loss and accuracy, ... (empty until it ends)."""
        path = self.directory / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def encoder(self) -> Encoder:
        """The trained encoder (eval mode): images ``(B, C, H, W)`` in [0, 1] -> features ``(B, D)``."""
        return load_encoder(self.directory).eval()
