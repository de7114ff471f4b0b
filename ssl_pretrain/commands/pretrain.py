"""``ssl-pretrain pretrain``: the trainer sets up its own device and seeds (per process under torchrun)."""

from __future__ import annotations

from ..config import Config
from ..train.trainer import pretrain
from .run_dir import Run


def run_pretrain(config: Config, resume: bool = False) -> Run:
    """Train an encoder with the configured pretext task (``resume``: from ``checkpoints/last.pt``)."""
    return Run(pretrain(config, resume=resume))


def format_run(run: Run) -> str:
    return f"run directory: {run.directory}"
