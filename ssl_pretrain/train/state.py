"""What a pretraining run is made of while it trains: its wiring (fixed for the run), the loop's state (what a
checkpoint keeps, and what only this process needs) and the reporters that watch it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..config import Config
from ..data import DataInfo, EpochBatchSampler
from ..data.sources import Batch
from ..tasks import PretextTask
from ..utils.precision import Precision
from ..utils.progress import PlainProgress
from .distributed import World
from .gauges import RepresentationGauge
from .online_eval import OnlineEvaluator
from .step_watch import NonFiniteWatch, StepTimer, SyncCheck


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


def count_views(inputs) -> int:
    """How many images the step's encoder input holds: rows of a tensor, summed over a mapping's entries
    (multi-crop's global and local views, a multi-task's sub-tasks). Shapes only: no wait for the device."""
    if isinstance(inputs, dict):
        return sum(count_views(value) for value in inputs.values())
    return len(inputs)
