"""The run directory ``output_dir/run_name``: refuse to clobber an earlier run, check writability early."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .config import Config
from .errors import BadInput
from .utils.files import atomic_write_bytes


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def check_run_dir(config: Config, resume: bool) -> Path:
    """Validate the run directory before any training; creates nothing.

    A new run may not reuse a directory that already holds a run; a resumed run needs
    ``checkpoints/last.pt``. The nearest existing parent must be writable.
    """
    run_dir = config.run_dir
    if resume:
        if not checkpoint_path(run_dir).is_file():
            raise BadInput(f"--resume: no checkpoint at {checkpoint_path(run_dir)} (run_name={config.run_name})")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise BadInput(
            f"run_name: {run_dir} already holds a run; pass --resume to continue it or choose another run_name"
        )
    _check_writable(Path(config.output_dir))
    return run_dir


def _check_writable(path: Path) -> None:
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"output_dir: {existing} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".ssl_pretrain_write_test")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise BadInput(f"output_dir: cannot write under {existing} ({err.strerror})") from None


def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())
