"""The loop: epochs of steps, each a uint8 batch moved to the device, made into the task's inputs and targets
there, one optimizer step; logging, evaluation, gauges and checkpoints at their steps."""

from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm

from ..data import to_device_float
from ..data.loader import decode_on_device, full_batch, seed_workers
from ..utils.precision import to_memory_format
from . import checkpoint, distributed
from .reporting import log_images, log_window, measure_gauges, online_eval, report_dropped, report_skipped
from .state import TrainingRun, count_views
from .step_watch import TrainingError


def train(run: TrainingRun) -> None:
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
                check_finite(run)  # before anything is logged or saved
            if logging:
                log_window(run)
            if run.wiring.world.is_main and (progress.step % cfg.image_every == 0 or progress.step == 1):
                log_images(run.reporters.writer, run.wiring.task, run.state.last_batch, progress.step)
            if run.reporters.online is not None and run.reporters.online.due(
                progress.step, progress.epoch, epoch_ended=False
            ):
                online_eval(run)
            if run.reporters.gauge is not None and run.reporters.gauge.due(progress.step, run.wiring.steps):
                measure_gauges(run)
            if saving:
                checkpoint.save_checkpoint(run)
            if progress.step >= run.wiring.steps:
                break
        if progress.batch_in_epoch >= len(run.wiring.sampler):
            report_dropped(run)
            report_skipped(progress.epoch_skipped, run)
            progress.epoch_skipped = []
            progress.epoch += 1
            progress.batch_in_epoch = 0
            if run.reporters.online is not None and run.reporters.online.due(
                progress.step, progress.epoch, epoch_ended=True
            ):
                online_eval(run)
    check_finite(run)
    report_skipped(progress.epoch_skipped, run)  # a run that ends inside an epoch counts that part too
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


def check_finite(run: TrainingRun) -> None:
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
