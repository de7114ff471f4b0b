"""Helpers shared by the benchmark scripts: machine description and appending to RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

from ssl_pretrain.config import Config, load_config

RESULTS = Path(__file__).parent / "RESULTS.md"


def machine() -> str:
    import kornia
    import torchvision

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, kornia {kornia.__version__}, Python {platform.python_version()}"
    )


def append_results(title: str, body: str) -> None:
    date = datetime.date.today().isoformat()
    with RESULTS.open("a") as f:
        f.write(f"\n## {title} ({date})\n\nMachine: {machine()}\n\n{body.rstrip()}\n")


def run_config(run: Path, overrides: list[str]) -> Config:
    """The config of a finished run directory, evaluating its encoder (no progress bars)."""
    return load_config(run / "config.yaml", [f"probe.encoder={run}", "trainer.progress=false", *overrides])


def sync(device) -> None:
    """Wait for the device's queued work (timings on CUDA are otherwise of the launches only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
