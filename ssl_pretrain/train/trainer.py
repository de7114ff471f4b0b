"""Pretraining, read top to bottom: set up (:mod:`.setup`) -> the loop (:mod:`.loop`) -> the last checkpoint,
the exported encoder and ``metrics.json``.

Every step: a uint8 batch goes to the device, becomes float in [0, 1], the task builds its own
supervision there (Kornia, per-sample random parameters), one optimizer step follows.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..build import resolve_device
from ..config import Config
from ..encoders.export import export_encoder
from ..runs import write_json
from ..utils.files import weights_digest
from ..utils.precision import configure_cuda
from ..utils.rng import seed_everything
from . import checkpoint, distributed
from .distributed import World, rank_device, world_from_env
from .loop import train
from .setup import check_distributed_options, set_up
from .state import TrainingRun, count_views, total_steps
from .step_watch import TrainingError
from .summary import final_metrics, peak_memory_mb

__all__ = ["TrainingError", "count_views", "peak_memory_mb", "pretrain", "total_steps"]


def pretrain(config: Config, resume: bool = False) -> Path:
    """Run (or resume) a pretraining; returns the run directory.

    Under ``torchrun`` every process calls this; they train one model data-parallel and rank 0 alone
    writes the run directory.
    """
    world = world_from_env()
    device = rank_device(resolve_device(config.device), world)
    check_distributed_options(config, world, device)
    configure_cuda(device, config.trainer.cudnn_benchmark, config.trainer.tf32)
    world = distributed.start(world, device, config.trainer.dist_timeout)
    try:
        return _pretrain(config, resume or config.trainer.resume, world, device)
    finally:
        distributed.stop(world)


def _pretrain(config: Config, resume: bool, world: World, device: torch.device) -> Path:
    seed_everything(config.seed)
    run = set_up(config, resume, world, device)
    try:
        train(run)
    finally:
        run.reporters.bar.close()
        if run.reporters.writer is not None:
            run.reporters.writer.close()
    _finish(run)
    return run.wiring.run_dir


def _finish(run: TrainingRun) -> None:
    """The last checkpoint (every rank's buffers made rank 0's first), then on rank 0 the encoder exported and
    ``metrics.json`` with every rank's weights digest and host-sync counts; the run directory is complete
    when any process returns."""
    task, world = run.wiring.task, run.wiring.world
    distributed.broadcast_buffers(task, world)
    checkpoint.save_checkpoint(run)
    digests = distributed.gather_objects(weights_digest(task.state_dict()), world)
    syncs = distributed.gather_objects(run.reporters.sync_check.counts, world)
    if world.is_main:
        export_encoder(task.encoder, run.wiring.run_dir)
        write_json(run.wiring.run_dir / "metrics.json", final_metrics(run, run.wiring.dataset_size, digests, syncs))
    distributed.barrier(world)
