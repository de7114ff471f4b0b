"""Training checkpoints kept as step snapshots beside ``last.pt``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def keep_snapshot(last: Path, step: int, keep: int) -> None:
    """Also keep ``last`` as ``step-<step>.pt`` beside it (a hard link, else a copy, made atomically) and
    delete all but the ``keep`` newest such snapshots. ``keep = 0`` keeps none: ``last.pt`` alone."""
    if keep <= 0:
        return
    snapshot = last.with_name(f"step-{step:08d}.pt")
    tmp = last.with_name(f".{snapshot.name}.tmp")
    try:
        os.link(last, tmp)
    except OSError:
        shutil.copyfile(last, tmp)
    os.replace(tmp, snapshot)
    for old in sorted(last.parent.glob("step-*.pt"))[:-keep]:
        old.unlink()
