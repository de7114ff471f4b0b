"""The pretraining loop, read top to bottom: data -> task -> run directory -> steps -> export.

Every step: a uint8 batch goes to the device, becomes float in [0, 1], the task builds its own
supervision there (Kornia, per-sample random parameters), one optimizer step follows.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from ..build import make_encoder, make_task, resolve_device
from ..config import Config, save_config
from ..data import DataInfo, EpochBatchSampler, data_info, open_split, to_device_float
from ..data.image_folder import split_record
from ..data.loader import (
    dataset_on_host,
    decode_on_device,
    decodes_on_device,
    full_batch,
    on_device,
    pretraining_batches,
    seed_workers,
)
from ..data.sources import Batch
from ..encoders.export import export_encoder
from ..errors import BadInput, ConfigError
from ..runs import check_run_dir, checkpoint_path, write_json
from ..tasks import PretextTask
from ..utils.draws import place_draws
from ..utils.files import (
    FORMAT,
    atomic_torch_save,
    atomic_write_bytes,
    load_checkpoint,
    load_state_strict,
    weights_digest,
)
from ..utils.optim import make_optimizer, make_scheduler
from ..utils.precision import (
    Precision,
    announce_precision,
    configure_cuda,
    resolve_channels_last,
    resolve_precision,
    to_memory_format,
)
from ..utils.progress import PlainProgress, progress_bar
from ..utils.rng import rng_state, seed_everything, set_rng_state
from . import distributed
from .checkpoint import keep_snapshot
from .distributed import World, rank_device, rank_seed, world_from_env
from .gauges import RepresentationGauge, collapse_warning, gauge_summary
from .online_eval import OnlineEvaluator
from .step_watch import NonFiniteWatch, StepTimer, SyncCheck, TrainingError


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    images_seen: int = 0
    views_seen: int = 0  # what the encoder ran on: every view, global or local, of every image
    train_seconds: float = 0.0
    skipped_images: int = 0
    last_metrics: dict = field(default_factory=dict)
    skipped_steps: int = 0
    loop_seconds: float = 0.0  # wall time of the loop: data, steps, logging, checkpoints (not online eval)
    compile_seconds: float = 0.0  # first steps of compiled models, kept out of images/s
    compile_images: int = 0
    epoch_skipped: list[str] = field(default_factory=list)  # this process's unreadable files, this epoch so far
    gauges: list[dict] = field(default_factory=list)  # every gauge measurement so far (rank 0)
    collapse_warning_step: int | None = None


@dataclass
class Wiring:
    """What the loop is built from, fixed for the run. ``model`` is what the forward pass calls: the task
    itself, or the task wrapped in DDP and/or ``torch.compile``."""

    config: Config
    world: World
    device: torch.device
    info: DataInfo
    task: PretextTask
    model: nn.Module
    loader: DataLoader
    sampler: EpochBatchSampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    channels_last: bool
    steps: int
    run_dir: Path
    dataset_size: int = 0


@dataclass
class LoopState:
    """Where the loop is: the progress a checkpoint keeps, and what only this process's loop needs."""

    progress: Progress
    compiling: bool = False  # the next step is this process's first of a compiled model
    window_images: int = 0
    window_start: float = 0.0
    last_values: dict = field(default_factory=dict)  # the last step's metrics, still on the device
    last_batch: tuple | None = None
    previous_batch: Batch | None = None  # this process's last full batch (fills one a source left empty)


@dataclass
class Reporters:
    """What watches and reports the loop: TensorBoard (None off rank 0), the progress bar, online
    evaluation, the representation gauges (rank 0), step timing, the non-finite and host-sync checks."""

    writer: SummaryWriter | None = None
    bar: tqdm | PlainProgress | None = None
    online: OnlineEvaluator | None = None
    timer: StepTimer | None = None
    watch: NonFiniteWatch | None = None
    sync_check: SyncCheck | None = None
    gauge: RepresentationGauge | None = None


@dataclass
class TrainingRun:
    """Everything the loop touches, in three parts: the wiring, the loop's state, the reporters."""

    wiring: Wiring
    state: LoopState
    reporters: Reporters


def total_steps(config: Config, steps_per_epoch: int) -> int:
    steps = config.trainer.epochs * steps_per_epoch
    return min(steps, config.trainer.max_steps) if config.trainer.max_steps else steps


def pretrain(config: Config, resume: bool = False) -> Path:
    """Run (or resume) a pretraining; returns the run directory.

    Under ``torchrun`` every process calls this; they train one model data-parallel and rank 0 alone
    writes the run directory.
    """
    world = world_from_env()
    device = rank_device(resolve_device(config.device), world)
    _check_distributed_options(config, world, device)
    configure_cuda(device, config.trainer.cudnn_benchmark, config.trainer.tf32)
    world = distributed.start(world, device, config.trainer.dist_timeout)
    try:
        return _pretrain(config, resume or config.trainer.resume, world, device)
    finally:
        distributed.stop(world)


def _check_distributed_options(config: Config, world: World, device: torch.device) -> None:
    if config.trainer.sync_batchnorm and world.distributed and device.type != "cuda":
        raise ConfigError(
            "trainer.sync_batchnorm",
            "needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU); on CPU each process "
            "normalises its own batch, or use a normalisation without batch statistics (model.norm=group)",
        )


def _check_batch(task, batch: int) -> None:
    """Refuse a batch smaller than the task's loss is defined for (before the run directory is touched)."""
    if batch < task.min_batch:
        raise ConfigError(
            "trainer.batch_size",
            f"{type(task).__name__} needs at least {task.min_batch} images a batch, got {batch} "
            "(trainer.batch_size, or the images there are)",
        )


def _pretrain(config: Config, resume: bool, world: World, device: torch.device) -> Path:
    seed_everything(config.seed)
    info = data_info(config.data)
    task = make_task(config, make_encoder(config, info)).to(device)
    place_draws(task, device, torch.float32)  # Kornia's ranges moved now, not asked for inside a step
    dataset = open_split(config.data, "pretrain")
    decode_here = decodes_on_device(config.data.decode, device, dataset)
    gauge = _make_gauge(config, dataset, info, device, world)
    chosen = task.select_images(len(dataset), config.seed)
    if chosen is not None:
        dataset = dataset.subset(chosen)
    run_dir = check_run_dir(config, resume)
    online = OnlineEvaluator(config, info, device) if config.online.every and world.is_main else None

    dataset = on_device(dataset, device)
    pin = device.type == "cuda" and dataset_on_host(dataset)
    loader, sampler = pretraining_batches(
        dataset, config.trainer.batch_size, config.seed, world.rank, world.size, config.data.num_workers, pin,
        decode_here, world.local_size,
    )  # fmt: skip
    _check_batch(task, sampler.global_batch_size if task.needs_whole_batch else sampler.batch_size)
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
        progress = _restore(checkpoint_path(run_dir), task, optimizer, scheduler, precision, world)
    else:
        progress = Progress()
        if world.rank:  # rank 0 keeps drawing what a one-process run draws; the others differ
            seed_everything(rank_seed(config.seed, world.rank))
    model = _wrap_model(task, world, device, config.trainer.compile, config.trainer.compile_mode)

    distributed.barrier(world)  # every rank has checked the run directory before rank 0 writes to it
    writer = None
    if world.is_main:
        announce_precision(config.trainer.precision, device, "pretraining")
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")  # on resume: only once the checkpoint has loaded
        _record_split(config, dataset, run_dir)
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=progress.step + 1 if resume else None)
    bar = progress_bar(
        steps, f"pretrain {config.task.name}", config.trainer.progress and world.is_main, initial=progress.step
    )
    wiring = Wiring(
        config, world, device, info, task, model, loader, sampler, optimizer, scheduler, precision, channels_last,
        steps, run_dir, len(dataset),
    )  # fmt: skip
    reporters = Reporters(
        writer, bar, online, StepTimer(device), NonFiniteWatch(device), SyncCheck(config.trainer.sync_debug, device),
        gauge,
    )  # fmt: skip
    run = TrainingRun(wiring, LoopState(progress, compiling=config.trainer.compile), reporters)
    try:
        _train(run)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    distributed.broadcast_buffers(task, world)
    _save_checkpoint(run)
    digests = distributed.gather_objects(weights_digest(task.state_dict()), world)
    syncs = distributed.gather_objects(run.reporters.sync_check.counts, world)
    if world.is_main:
        export_encoder(task.encoder, run_dir)
        metrics = _final_metrics(run, len(dataset), digests, syncs)
        write_json(run_dir / "metrics.json", metrics)
    distributed.barrier(world)  # the run directory is complete when any process returns
    return run_dir


def _make_gauge(config: Config, dataset, info: DataInfo, device: torch.device, world: World):
    """Rank 0's :class:`RepresentationGauge` over the pretraining images, or None (``gauges.every: null``; a
    streamed dataset, which has no fixed set of images to come back to, says so)."""
    if not (config.gauges.every and world.is_main):
        return None
    if getattr(dataset, "streaming", False):
        print("note: gauges: streamed shards have no fixed image set to measure on; gauges off", file=sys.stderr)
        return None
    return RepresentationGauge(config.gauges, dataset, info, device, config.seed, config.evaluation.batch_size)


def _record_split(config: Config, dataset, run_dir: Path) -> None:
    """``data_split.json``: what pretraining read and which test files it kept out (their paths in
    ``held_out_test_files.txt``), so a probe can say whether the encoder saw its test images."""
    record, held = split_record(config.data, dataset)
    if held:
        atomic_write_bytes(run_dir / "held_out_test_files.txt", ("\n".join(held) + "\n").encode())
    write_json(run_dir / "data_split.json", record)


def _wrap_model(task: PretextTask, world: World, device: torch.device, compile_model: bool, mode: str) -> nn.Module:
    """The module the forward pass calls: DDP across processes (gradients all-reduced), optionally compiled."""
    model: nn.Module = task
    if world.distributed:
        model = DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        model = torch.compile(model, mode=mode)
    return model


def _train(run: TrainingRun) -> None:
    loop_start = time.perf_counter()
    try:
        _loop(run)
    finally:
        run.state.progress.loop_seconds += time.perf_counter() - loop_start
        run.state.progress.train_seconds += run.reporters.timer.collect()


def _loop(run: TrainingRun) -> None:
    """Epochs of steps. A step makes no host synchronisation (no ``.item()``, no blocking collective, no
    device wait) unless it logs, saves a checkpoint or ends the run: metrics and the non-finite check stay on
    the device until then (``trainer.nonfinite=skip`` is the exception: it decides every step, on the host)."""
    cfg, progress = run.wiring.config.trainer, run.state.progress
    run.state.window_start = time.perf_counter()
    run.wiring.task.train()
    while progress.step < run.wiring.steps:
        run.wiring.sampler.set_epoch(progress.epoch, progress.batch_in_epoch)
        seed_workers(run.wiring.loader, run.wiring.sampler)
        for batch in run.wiring.loader:
            batch = decode_on_device(batch, run.wiring.device)  # data.decode=gpu; otherwise the batch as it is
            progress.batch_in_epoch += 1
            progress.epoch_skipped.extend(batch.skipped)
            with run.reporters.sync_check.step(run.wiring.optimizer, progress.step + 1):
                stepped = _train_step(run, batch)
            if not stepped:
                continue
            logging = progress.step % cfg.log_every == 0 or progress.step == run.wiring.steps
            saving = progress.step % cfg.checkpoint_every == 0 and progress.step < run.wiring.steps
            if logging or saving:
                _check_finite(run)  # before anything is logged or saved
            if logging:
                _log_window(run)
            if run.wiring.world.is_main and (progress.step % cfg.image_every == 0 or progress.step == 1):
                _log_images(run.reporters.writer, run.wiring.task, run.state.last_batch, progress.step)
            if run.reporters.online is not None and run.reporters.online.due(
                progress.step, progress.epoch, epoch_ended=False
            ):
                _online_eval(run)
            if run.reporters.gauge is not None and run.reporters.gauge.due(progress.step, run.wiring.steps):
                _measure_gauges(run)
            if saving:
                _save_checkpoint(run)
            if progress.step >= run.wiring.steps:
                break
        if progress.batch_in_epoch >= len(run.wiring.sampler):
            _report_dropped(run)
            _report_skipped(progress.epoch_skipped, run)
            progress.epoch_skipped = []
            progress.epoch += 1
            progress.batch_in_epoch = 0
            if run.reporters.online is not None and run.reporters.online.due(
                progress.step, progress.epoch, epoch_ended=True
            ):
                _online_eval(run)
    _check_finite(run)
    _report_skipped(progress.epoch_skipped, run)  # a run that ends inside an epoch counts that part too
    progress.epoch_skipped = []


def _train_step(run: TrainingRun, batch) -> bool:
    """One optimizer step on ``batch``; False when the batch was left out (one process, none of its files
    readable)."""
    progress, world = run.state.progress, run.wiring.world
    if world.distributed:
        # Every process steps on a full batch of the same shape, whatever files its source dropped: no
        # agreement between processes (a collective read on the host) is needed, and gathers know the sizes.
        batch = full_batch(batch, run.wiring.sampler.batch_size, run.state.previous_batch)
        run.state.previous_batch = batch
    elif len(batch.images) == 0:
        return False
    step_images = len(batch.images) * world.size
    timer = run.reporters.timer.start()
    inputs, targets, outputs, loss, metrics, loss_scale = _forward(run, batch)
    if (
        run.wiring.config.trainer.nonfinite == "skip"
        and distributed.sum_across([float(not torch.isfinite(loss))], world)[0]
    ):
        _non_finite(run, loss)
        return False
    run.reporters.watch.observe(loss, progress.step + 1)
    run.wiring.optimizer.zero_grad(set_to_none=True)
    run.wiring.precision.backward_and_step(loss * loss_scale, run.wiring.optimizer)
    run.wiring.scheduler.step()
    after = run.wiring.task.after_step(progress.step + 1, run.wiring.steps)  # a momentum teacher moves, timed
    seconds = run.reporters.timer.stop(timer, wait=run.state.compiling)
    if run.state.compiling:  # this process's first compiled step: compile time, not training throughput
        progress.compile_seconds += seconds
        progress.compile_images += int(step_images)
        run.state.compiling = False
    progress.step += 1
    progress.images_seen += int(step_images)
    progress.views_seen += count_views(inputs) * world.size
    run.state.window_images += int(step_images)
    run.state.last_values = {"loss": loss.detach(), **{k: v.detach() for k, v in metrics.items()}, **after}
    run.state.last_batch = (inputs, targets, outputs)
    run.reporters.bar.update(1)
    return True


def _read_metrics(run: TrainingRun) -> dict[str, float]:
    """The last step's metrics as numbers (a host synchronisation: logging steps, checkpoints, the end)."""
    if run.state.last_values:
        run.state.progress.last_metrics = {k: float(v) for k, v in run.state.last_values.items()}
    return run.state.progress.last_metrics


def _log_window(run: TrainingRun) -> None:
    """Scalars of the last step (averaged over processes) and images/s of the steps since the last log."""
    progress, world = run.state.progress, run.wiring.world
    progress.train_seconds += run.reporters.timer.collect()
    logged = distributed.mean_across(_read_metrics(run), world)
    rate = run.state.window_images / max(1e-9, time.perf_counter() - run.state.window_start)
    if world.is_main:
        _log_scalars(run.reporters.writer, progress.step, logged, run.wiring.optimizer, rate)
        if run.wiring.precision.skipped is not None:  # fp16: the steps the gradient scaler skipped, read now
            run.reporters.writer.add_scalar(
                "train/fp16_overflow_steps", int(run.wiring.precision.skipped), progress.step
            )
        run.reporters.bar.set_postfix(loss=f"{logged['loss']:.4f}", img_s=f"{rate:.0f}")
    run.state.window_images, run.state.window_start = 0, time.perf_counter()


def _check_finite(run: TrainingRun) -> None:
    """``trainer.nonfinite=stop``: if any step since the last check had a non-finite loss (on any process),
    stop naming the first; nothing after it is logged or saved, so the last checkpoint is a good one."""
    bad = run.reporters.watch.first_bad(run.wiring.world)
    if bad is not None:
        step, value = bad
        raise TrainingError(
            f"loss became {value} at step {step}; the last good checkpoint is kept "
            "(lower trainer.lr, or set trainer.nonfinite=skip to skip such steps)"
        )


def _forward(run: TrainingRun, batch):
    """One batch through the task: ``(inputs, targets, outputs, loss, metrics, loss_scale)``, the inputs,
    targets and outputs this process's own (what previews show).

    Under DDP a task that compares samples with each other (``needs_whole_batch``) gets every rank's
    outputs and targets in its loss; each rank's loss is then the global one, and ``loss_scale = world
    size`` makes DDP's gradient average equal to its gradient.
    """
    images = to_device_float(batch.images, run.wiring.info, run.wiring.device)
    inputs, targets = run.wiring.task.make_batch(images, batch.indices.to(run.wiring.device, non_blocking=True))
    inputs = to_memory_format(inputs, run.wiring.channels_last)
    loss_scale = 1
    with run.wiring.precision.autocast():
        outputs = run.wiring.model(inputs)
        if run.wiring.world.distributed and run.wiring.task.needs_whole_batch:
            everyones = (
                distributed.gather_tree(outputs, run.wiring.world),
                distributed.gather_tree(targets, run.wiring.world),
            )
            loss_scale = run.wiring.world.size
        else:
            everyones = outputs, targets
    loss, metrics = run.wiring.task.loss_in_fp32(*everyones)  # the loss's statistics in fp32, autocast or not
    return inputs, targets, outputs, loss.float(), metrics, loss_scale


def _non_finite(run: TrainingRun, loss: torch.Tensor) -> None:
    """``trainer.nonfinite=skip``: no update for this step; count it and say so."""
    progress = run.state.progress
    value = f"{loss.item()}" if not torch.isfinite(loss) else "non-finite on another process"
    run.wiring.optimizer.zero_grad(set_to_none=True)
    run.wiring.scheduler.step()
    progress.step += 1
    progress.skipped_steps += 1
    run.reporters.bar.update(1)
    if run.wiring.world.is_main:
        tqdm.write(
            f"warning: loss became {value} at step {progress.step}; step skipped "
            f"({progress.skipped_steps} so far, trainer.nonfinite=skip)",
            file=sys.stderr,
        )
        run.reporters.writer.add_scalar("train/skipped_steps", progress.skipped_steps, progress.step)


@contextlib.contextmanager
def _uncounted(run: TrainingRun) -> Iterator[None]:
    """Time spent inside is left out of the loop's seconds and of the current images/s window (evaluation and
    gauges during pretraining observe the loop; they are not part of it)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        run.state.progress.loop_seconds -= elapsed
        run.state.window_start += elapsed


def _online_eval(run: TrainingRun) -> None:
    with _uncounted(run):
        results = run.reporters.online.run(run.wiring.task.encoder, run.state.progress.step, run.reporters.writer)
    run.reporters.bar.set_postfix(
        loss=f"{_read_metrics(run)['loss']:.4f}", **{k: f"{v:.2f}" for k, v in results.items()}
    )


def _measure_gauges(run: TrainingRun) -> None:
    """RankMe and the normalised spread now (rank 0); the collapse warning once. Not counted as training time."""
    progress = run.state.progress
    gauge = run.reporters.gauge
    with _uncounted(run):
        figures = gauge.measure(run.wiring.task.encoder)
    progress.gauges.append({"step": progress.step, **figures})
    run.reporters.writer.add_scalar("gauges/rankme", figures["rankme"], progress.step)
    run.reporters.writer.add_scalar("gauges/std", figures["std"], progress.step)
    warning = collapse_warning(progress.step, figures["rankme"], figures["std"], gauge.cfg)
    if warning is not None and progress.collapse_warning_step is None:
        progress.collapse_warning_step = progress.step
        tqdm.write(warning, file=sys.stderr)


def _report_dropped(run: TrainingRun) -> None:
    """A streamed epoch trims what would leave workers or processes with unequal batches: say how much."""
    sampler, progress = run.wiring.sampler, run.state.progress
    dropped = sampler.dropped(progress.epoch) if hasattr(sampler, "dropped") else 0
    if dropped and run.wiring.world.is_main:
        run.reporters.writer.add_scalar("data/dropped_samples", dropped, progress.step)
        tqdm.write(
            f"note: epoch {progress.epoch + 1}: {dropped} streamed sample(s) in no batch (every loader worker "
            "and process takes the same number of batches; docs/data.md)",
            file=sys.stderr,
        )


def _report_skipped(skipped: list[str], run: TrainingRun) -> None:
    """One warning per epoch (from rank 0) with the count of unreadable files over all ranks."""
    total = int(distributed.sum_across([len(skipped)], run.wiring.world)[0])
    if not total:
        return
    run.state.progress.skipped_images += total
    size = run.wiring.dataset_size
    example = f" (e.g. {skipped[0]})" if skipped else ""
    if total >= size:
        raise BadInput(f"data.root: none of the {size} image files could be read{example}")
    if run.wiring.world.is_main:
        tqdm.write(
            f"warning: skipped {total} unreadable image file(s) in epoch {run.state.progress.epoch + 1}{example}",
            file=sys.stderr,
        )


def _log_scalars(writer: SummaryWriter, step: int, metrics: dict, optimizer, rate: float) -> None:
    for name, value in metrics.items():
        writer.add_scalar(f"train/{name}", value, step)
    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
    writer.add_scalar("train/images_per_s", rate, step)


@torch.no_grad()
def _log_images(writer: SummaryWriter, task, batch: tuple, step: int) -> None:
    inputs, targets, outputs = batch
    for name, images in task.previews(inputs, targets, outputs).items():
        grid = make_grid(images.detach().float().cpu().flatten(0, 1), nrow=images.shape[1], pad_value=1.0)
        writer.add_image(name, grid, step)


def _save_checkpoint(run: TrainingRun) -> None:
    """Every rank hands its RNG state and its unreadable files of the epoch so far to rank 0, which writes
    ``last.pt`` atomically."""
    _read_metrics(run)
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
        "fp16_overflow_steps": _overflow_steps(run.wiring.precision),
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


def _restore(path: Path, task, optimizer, scheduler, precision: Precision, world: World) -> Progress:
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


def _overflow_steps(precision: Precision) -> int:
    """fp16: the steps the gradient scaler has skipped in this run (read from the device)."""
    return int(precision.skipped) if precision.skipped is not None else 0


def count_views(inputs) -> int:
    """How many images the step's encoder input holds: rows of a tensor, summed over a mapping's entries
    (multi-crop's global and local views, a multi-task's sub-tasks). Shapes only: no wait for the device."""
    if isinstance(inputs, dict):
        return sum(count_views(value) for value in inputs.values())
    return len(inputs)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: allocated on a CUDA device, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _final_metrics(run: TrainingRun, dataset_size: int, digests: list[str], syncs: list[dict]) -> dict:
    config, progress = run.wiring.config, run.state.progress
    images_per_s = (progress.images_seen - progress.compile_images) / max(1e-9, progress.train_seconds)
    views_per_image = progress.views_seen / max(1, progress.images_seen)
    metrics = {
        "task": config.task.name,
        "backbone": config.model.backbone,
        "steps": progress.step,
        "epochs": round(progress.images_seen / dataset_size, 3),
        "images_seen": progress.images_seen,
        "views_seen": progress.views_seen,
        "train_seconds": round(progress.train_seconds, 2),
        "images_per_s": round(images_per_s, 1),
        "views_per_image": round(views_per_image, 3),
        "views_per_s": round(images_per_s * views_per_image, 1),
        "compile_seconds": round(progress.compile_seconds, 2),
        "loop_seconds": round(progress.loop_seconds, 2),
        "loop_images_per_s": round(progress.images_seen / max(1e-9, progress.loop_seconds), 1),
        "peak_memory_mb": round(peak_memory_mb(run.wiring.device), 1),
        "skipped_images": progress.skipped_images,
        "skipped_steps": progress.skipped_steps,
        "processes": run.wiring.world.size,
        "global_batch_size": run.wiring.sampler.global_batch_size,
        "precision": run.wiring.precision.name,
        "weights_sha256_per_rank": digests,
        "sync_debug": config.trainer.sync_debug,
        "sync_checked_steps": run.reporters.sync_check.checked,
        "step_host_syncs_per_rank": syncs,
    }
    if run.wiring.precision.scaler is not None:
        metrics["fp16_overflow_steps"] = _overflow_steps(run.wiring.precision)
    metrics.update({f"pretext_{k}": v for k, v in progress.last_metrics.items()})
    if run.reporters.online is not None:
        metrics.update({f"online_{k}": v for k, v in run.reporters.online.last.items()})
    if run.reporters.gauge is not None:
        metrics.update(gauge_summary(progress.gauges, progress.collapse_warning_step))
    return metrics
