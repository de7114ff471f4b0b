"""Setting up a pretraining: the task on the device, its data and batches, the optimizer, the progress so far
(a resumed run's checkpoint), the run directory and the reporters; the result is a :class:`TrainingRun`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from ..build import make_encoder, make_task
from ..config import Config, save_config
from ..data import DataInfo, data_info, open_split
from ..data.image_folder import split_record
from ..data.loader import dataset_on_host, decodes_on_device, on_device, pretraining_batches
from ..errors import ConfigError
from ..runs import check_run_dir, checkpoint_path, write_json
from ..tasks import PretextTask
from ..utils.draws import place_draws
from ..utils.files import atomic_write_bytes
from ..utils.optim import make_optimizer, make_scheduler
from ..utils.precision import announce_precision, resolve_channels_last, resolve_precision
from ..utils.progress import progress_bar
from ..utils.rng import seed_everything
from . import distributed
from .checkpoint import restore_progress
from .distributed import World, rank_seed
from .gauges import RepresentationGauge
from .online_eval import OnlineEvaluator
from .state import LoopState, Progress, Reporters, TrainingRun, Wiring, total_steps
from .step_watch import NonFiniteWatch, StepTimer, SyncCheck


def set_up(config: Config, resume: bool, world: World, device: torch.device) -> TrainingRun:
    """Everything the loop needs, checked before the run directory is written (rank 0 writes it)."""
    info = data_info(config.data)
    task = make_task(config, make_encoder(config, info)).to(device)
    place_draws(task, device, torch.float32)  # Kornia's ranges moved now, not asked for inside a step
    dataset = open_split(config.data, "pretrain")
    gauge = make_gauge(config, dataset, info, device, world)
    dataset, loader, sampler = _batches(config, task, dataset, world, device)
    run_dir = check_run_dir(config, resume)
    online = OnlineEvaluator(config, info, device) if config.online.every and world.is_main else None
    steps = total_steps(config, len(sampler))
    precision = resolve_precision(config.trainer.precision, device, warn=world.is_main)
    channels_last = resolve_channels_last(config.trainer.channels_last, device, task)
    if channels_last:
        task.to(memory_format=torch.channels_last)
    if world.distributed and config.trainer.sync_batchnorm:
        task = nn.SyncBatchNorm.convert_sync_batchnorm(task)
    optimizer = make_optimizer(task, config.trainer, fused=precision.needs_fused_optimizer)
    scheduler = make_scheduler(optimizer, config.trainer, steps)
    if resume:
        progress = restore_progress(checkpoint_path(run_dir), task, optimizer, scheduler, precision, world)
    else:
        progress = Progress()
        if world.rank:  # rank 0 keeps drawing what a one-process run draws; the others differ
            seed_everything(rank_seed(config.seed, world.rank))
    model = wrap_model(task, world, device, config.trainer.compile, config.trainer.compile_mode)
    distributed.barrier(world)  # every rank has checked the run directory before rank 0 writes to it
    writer = _open_run_dir(config, dataset, run_dir, progress.step, resume, device) if world.is_main else None
    bar = progress_bar(
        steps, f"pretrain {config.task.name}", config.trainer.progress and world.is_main, initial=progress.step
    )
    wiring = Wiring(
        config=config, world=world, device=device, info=info, task=task, model=model, loader=loader,
        sampler=sampler, optimizer=optimizer, scheduler=scheduler, precision=precision,
        channels_last=channels_last, steps=steps, run_dir=run_dir, dataset_size=len(dataset),
    )  # fmt: skip
    reporters = Reporters(
        writer=writer, bar=bar, online=online, timer=StepTimer(device), watch=NonFiniteWatch(device),
        sync_check=SyncCheck(config.trainer.sync_debug, device), gauge=gauge,
    )  # fmt: skip
    return TrainingRun(wiring, LoopState(progress, compiling=config.trainer.compile), reporters)


def _batches(config: Config, task: PretextTask, dataset, world: World, device: torch.device):
    """``(dataset, loader, sampler)``: the images the task trains on (its own choice of them, on the device
    when they fit there) in batches of ``trainer.batch_size`` per process; a batch too small is refused."""
    decode_here = decodes_on_device(config.data.decode, device, dataset)
    chosen = task.select_images(len(dataset), config.seed)
    if chosen is not None:
        dataset = dataset.subset(chosen)
    dataset = on_device(dataset, device)
    pin = device.type == "cuda" and dataset_on_host(dataset)
    loader, sampler = pretraining_batches(
        dataset, config.trainer.batch_size, config.seed, world.rank, world.size, config.data.num_workers, pin,
        decode_here, world.local_size,
    )  # fmt: skip
    check_batch(task, sampler.global_batch_size if task.needs_whole_batch else sampler.batch_size)
    return dataset, loader, sampler


def _open_run_dir(config: Config, dataset, run_dir: Path, step: int, resume: bool, device) -> SummaryWriter:
    """Rank 0: the precision announced, ``config.yaml`` and the data split written (on resume only once the
    checkpoint has loaded), TensorBoard's writer opened (a resumed run's later events purged)."""
    announce_precision(config.trainer.precision, device, "pretraining")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    record_split(config, dataset, run_dir)
    return SummaryWriter(str(run_dir / "tb"), purge_step=step + 1 if resume else None)


def check_distributed_options(config: Config, world: World, device: torch.device) -> None:
    if config.trainer.sync_batchnorm and world.distributed and device.type != "cuda":
        raise ConfigError(
            "trainer.sync_batchnorm",
            "needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU); on CPU each process "
            "normalises its own batch, or use a normalisation without batch statistics (model.norm=group)",
        )


def check_batch(task, batch: int) -> None:
    """Refuse a batch smaller than the task's loss is defined for (before the run directory is touched)."""
    if batch < task.min_batch:
        raise ConfigError(
            "trainer.batch_size",
            f"{type(task).__name__} needs at least {task.min_batch} images a batch, got {batch} "
            "(trainer.batch_size, or the images there are)",
        )


def make_gauge(config: Config, dataset, info: DataInfo, device: torch.device, world: World):
    """Rank 0's :class:`RepresentationGauge` over the pretraining images, or None (``gauges.every: null``; a
    streamed dataset, which has no fixed set of images to come back to, says so)."""
    if not (config.gauges.every and world.is_main):
        return None
    if getattr(dataset, "streaming", False):
        print("note: gauges: streamed shards have no fixed image set to measure on; gauges off", file=sys.stderr)
        return None
    return RepresentationGauge(config.gauges, dataset, info, device, config.seed, config.evaluation.batch_size)


def record_split(config: Config, dataset, run_dir: Path) -> None:
    """``data_split.json``: what pretraining read and which test files it kept out (their paths in
    ``held_out_test_files.txt``), so a probe can say whether the encoder saw its test images."""
    record, held = split_record(config.data, dataset)
    if held:
        atomic_write_bytes(run_dir / "held_out_test_files.txt", ("\n".join(held) + "\n").encode())
    write_json(run_dir / "data_split.json", record)


def wrap_model(task: PretextTask, world: World, device: torch.device, compile_model: bool, mode: str) -> nn.Module:
    """The module the forward pass calls: DDP across processes (gradients all-reduced), optionally compiled."""
    model: nn.Module = task
    if world.distributed:
        model = DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        model = torch.compile(model, mode=mode)
    return model
