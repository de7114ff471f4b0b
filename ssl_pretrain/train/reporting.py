"""What the loop reports and when: scalars and images/s to TensorBoard, previews, online evaluation and the
representation gauges (kept out of the loop's time), dropped and unreadable samples."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from ..errors import BadInput
from . import distributed
from .gauges import collapse_warning
from .state import TrainingRun


def read_metrics(run: TrainingRun) -> dict[str, float]:
    """The last step's metrics as numbers (a host synchronisation: logging steps, checkpoints, the end)."""
    if run.state.last_values:
        run.state.progress.last_metrics = {k: float(v) for k, v in run.state.last_values.items()}
    return run.state.progress.last_metrics


def log_window(run: TrainingRun) -> None:
    """Scalars of the last step (averaged over processes) and images/s of the steps since the last log."""
    progress, world = run.state.progress, run.wiring.world
    progress.train_seconds += run.reporters.timer.collect()
    logged = distributed.mean_across(read_metrics(run), world)
    rate = run.state.window_images / max(1e-9, time.perf_counter() - run.state.window_start)
    if world.is_main:
        _log_scalars(run.reporters.writer, progress.step, logged, run.wiring.optimizer, rate)
        if run.wiring.precision.skipped is not None:  # fp16: the steps the gradient scaler skipped, read now
            run.reporters.writer.add_scalar(
                "train/fp16_overflow_steps", int(run.wiring.precision.skipped), progress.step
            )
        run.reporters.bar.set_postfix(loss=f"{logged['loss']:.4f}", img_s=f"{rate:.0f}")
    run.state.window_images, run.state.window_start = 0, time.perf_counter()


@contextlib.contextmanager
def uncounted(run: TrainingRun) -> Iterator[None]:
    """Time spent inside is left out of the loop's seconds and of the current images/s window (evaluation and
    gauges during pretraining observe the loop; they are not part of it)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        run.state.progress.loop_seconds -= elapsed
        run.state.window_start += elapsed


def online_eval(run: TrainingRun) -> None:
    with uncounted(run):
        results = run.reporters.online.run(run.wiring.task.encoder, run.state.progress.step, run.reporters.writer)
    run.reporters.bar.set_postfix(
        loss=f"{read_metrics(run)['loss']:.4f}", **{k: f"{v:.2f}" for k, v in results.items()}
    )


def measure_gauges(run: TrainingRun) -> None:
    """RankMe and the normalised spread now (rank 0); the collapse warning once. Not counted as training time."""
    progress = run.state.progress
    gauge = run.reporters.gauge
    with uncounted(run):
        figures = gauge.measure(run.wiring.task.encoder)
    progress.gauges.append({"step": progress.step, **figures})
    run.reporters.writer.add_scalar("gauges/rankme", figures["rankme"], progress.step)
    run.reporters.writer.add_scalar("gauges/std", figures["std"], progress.step)
    warning = collapse_warning(progress.step, figures["rankme"], figures["std"], gauge.cfg)
    if warning is not None and progress.collapse_warning_step is None:
        progress.collapse_warning_step = progress.step
        tqdm.write(warning, file=sys.stderr)


def report_dropped(run: TrainingRun) -> None:
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


def report_skipped(skipped: list[str], run: TrainingRun) -> None:
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
def log_images(writer: SummaryWriter, task, batch: tuple, step: int) -> None:
    inputs, targets, outputs = batch
    for name, images in task.previews(inputs, targets, outputs).items():
        grid = make_grid(images.detach().float().cpu().flatten(0, 1), nrow=images.shape[1], pad_value=1.0)
        writer.add_image(name, grid, step)
