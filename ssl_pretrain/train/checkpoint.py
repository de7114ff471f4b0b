"""Training checkpoints: ``last.pt`` saved (rank 0, atomically) and restored (every rank), and step snapshots kept
beside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..errors import BadInput
from ..runs import checkpoint_path
from ..utils.files import FORMAT, atomic_torch_save, load_checkpoint, load_state_strict
from ..utils.precision import Precision
from ..utils.rng import rng_state, set_rng_state
from . import distributed
from .distributed import World
from .reporting import read_metrics
from .state import Progress, TrainingRun


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


def save_checkpoint(run: TrainingRun) -> None:
    """Every rank hands its RNG state and its unreadable files of the epoch so far to rank 0, which writes
    ``last.pt`` atomically."""
    read_metrics(run)
    run.state.progress.train_seconds += run.reporters.timer.collect()
    rng_states = distributed.gather_objects(rng_state(run.wiring.device), run.wiring.world)
    epoch_skipped = distributed.gather_objects(run.state.progress.epoch_skipped, run.wiring.world)
    if not run.wiring.world.is_main:
        return
    progress = run.state.progress
    state = {
        "format": FORMAT,
        "config": run.wiring.config.to_dict(),
        "encoder_spec": run.wiring.task.encoder.spec.to_dict(),
        "model": run.wiring.task.state_dict(),
        "optimizer": run.wiring.optimizer.state_dict(),
        "scheduler": run.wiring.scheduler.state_dict(),
        "scaler": run.wiring.precision.scaler.state_dict() if run.wiring.precision.scaler is not None else None,
        "fp16_overflow_steps": overflow_steps(run.wiring.precision),
        "step": progress.step,
        "epoch": progress.epoch,
        "batch_in_epoch": progress.batch_in_epoch,
        "images_seen": progress.images_seen,
        "views_seen": progress.views_seen,
        "train_seconds": progress.train_seconds,
        "loop_seconds": progress.loop_seconds,
        "compile_seconds": progress.compile_seconds,
        "compile_images": progress.compile_images,
        "skipped_images": progress.skipped_images,
        "skipped_steps": progress.skipped_steps,
        "epoch_skipped_per_rank": epoch_skipped,
        "world_size": run.wiring.world.size,
        "rng": rng_states[0],
        "rng_other_ranks": rng_states[1:],
        "metrics": progress.last_metrics,
        "gauges": progress.gauges,
        "collapse_warning_step": progress.collapse_warning_step,
    }
    atomic_torch_save(state, checkpoint_path(run.wiring.run_dir))
    keep_snapshot(checkpoint_path(run.wiring.run_dir), progress.step, run.wiring.config.trainer.keep_last)


def restore_progress(path: Path, task, optimizer, scheduler, precision: Precision, world: World) -> Progress:
    """Every rank loads the same checkpoint and takes back its own RNG state."""
    ckpt = load_checkpoint(path)
    saved_world = ckpt.get("world_size", 1)
    if saved_world != world.size:
        raise BadInput(
            f"--resume: {path} was written by {saved_world} process(es) and this run has {world.size}; "
            f"resume with the same number (torchrun --nproc_per_node ... so that the data order and "
            f"trainer.batch_size per process match)"
        )
    load_state_strict(
        task, ckpt["model"], path, f"the configured model ({task.encoder.spec.backbone} + {type(task).__name__})"
    )
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (ValueError, KeyError) as err:
        raise BadInput(f"{path}: optimizer state does not match trainer.optimizer ({err})") from None
    if precision.scaler is not None and ckpt.get("scaler"):
        precision.scaler.load_state_dict(ckpt["scaler"])
        precision.skipped = torch.tensor(ckpt.get("fp16_overflow_steps", 0), device=world.device)
    set_rng_state(ckpt["rng"] if world.rank == 0 else ckpt["rng_other_ranks"][world.rank - 1], world.device)
    return Progress(
        step=ckpt["step"],
        epoch=ckpt["epoch"],
        batch_in_epoch=ckpt["batch_in_epoch"],
        images_seen=ckpt["images_seen"],
        views_seen=ckpt.get("views_seen", 0),
        train_seconds=ckpt["train_seconds"],
        skipped_images=ckpt["skipped_images"],
        last_metrics=dict(ckpt["metrics"]),
        skipped_steps=ckpt.get("skipped_steps", 0),
        loop_seconds=ckpt.get("loop_seconds", 0.0),
        compile_seconds=ckpt.get("compile_seconds", 0.0),
        compile_images=ckpt.get("compile_images", 0),
        epoch_skipped=list(ckpt.get("epoch_skipped_per_rank", [[]] * world.size)[world.rank]),
        gauges=list(ckpt.get("gauges", [])),
        collapse_warning_step=ckpt.get("collapse_warning_step"),
    )


def overflow_steps(precision: Precision) -> int:
    """fp16: the steps the gradient scaler has skipped in this run (read from the device)."""
    return int(precision.skipped) if precision.skipped is not None else 0
