"""The training loop of one fine-tuning candidate: encoder + head on the labeled images, with the loss of
its :class:`~.unlabeled.UnlabeledMethod` (labels only, FixMatch, S4L, ...); validation top-1 after every
validated epoch, the best (or the last) epoch kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from ...config import FinetuneConfig
from ...data import EpochBatchSampler, make_loader, to_device_float
from ...utils.draws import augment_on_device
from ...utils.files import atomic_torch_save
from ...utils.optim import warmup_cosine_factor
from ...utils.precision import Precision, resolve_channels_last, resolve_precision, to_memory_format
from ...utils.progress import progress_bar
from ..shared.classifier import ImageClassifier, classifier_state
from ..shared.predict import accuracy, classifier_info, predict_logits
from .augment import finetune_augmentation
from .freezing import FreezePlan, make_finetune_optimizer
from .study import pseudo_label_accuracy
from .unlabeled import Unlabeled, UnlabeledMethod, unlabeled_batches
from .unlabeled.base import Objective


def warmup_steps(configured: int, total: int) -> int:
    """Linear warm-up length: as configured, but at most a tenth of the run (small label fractions)."""
    return min(configured, total // 10)


def finetune_epochs(epochs: int, steps: int | None, steps_per_epoch: int) -> int:
    """``finetune.epochs``, or with ``finetune.steps`` the epochs that hold at least that many steps (a
    budget in steps suits every label fraction: 1% of the labels is 4 steps an epoch at batch 128)."""
    return epochs if steps is None else max(1, math.ceil(steps / steps_per_epoch))


def validation_interval(val_every: int | None, epochs: int) -> int:
    """Epochs between validations: ``finetune.val_every``, or about 20 validations per run. Fewer looks at a
    small validation split keep the best epoch's score from being the luckiest of a hundred noisy ones."""
    return val_every if val_every is not None else max(1, epochs // 20)


def encoder_lr_mult(backbone_lr_mult: float, init: str) -> float:
    """``finetune.backbone_lr_mult`` for pretrained layers; a randomly initialised encoder (the control)
    learns at the head's rate, as training from scratch would."""
    return backbone_lr_mult if init == "pretrained" else 1.0


@dataclass
class LoopOptions:
    """What the loop needs from outside the ``finetune`` section: the seed, loader workers, the memory
    layout and precision settings (``trainer.channels_last``, ``trainer.precision``), how often to log,
    whether to show a progress bar."""

    seed: int
    num_workers: int = 0
    channels_last: bool | None = None
    log_every: int = 20
    progress: bool = True
    precision: str = "fp32"


@dataclass
class Recipe:
    """The schedule every candidate trains with (the ``finetune`` section's values) and the method that
    learns from the unlabeled images."""

    method: UnlabeledMethod
    epochs: int = 10
    steps: int | None = None
    batch_size: int = 128
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    val_every: int | None = None
    keep: str = "best"
    encoder_lr_mult: float = 0.1

    @classmethod
    def from_config(cls, cfg: FinetuneConfig, method: UnlabeledMethod) -> Recipe:
        names = ("epochs", "batch_size", "optimizer", "momentum", "weight_decay", "warmup_steps")
        steps = None if isinstance(cfg.steps, list) else cfg.steps  # a list: each candidate's own (its setting)
        return cls(
            method, **{n: getattr(cfg, n) for n in names}, steps=steps, val_every=cfg.val_every, keep=cfg.keep,
            encoder_lr_mult=encoder_lr_mult(cfg.backbone_lr_mult, cfg.init),
        )  # fmt: skip


@dataclass
class Candidate:
    """One candidate: the classifier and its freeze plan, the chosen values (``lr``, ``augment`` and the
    method's grid options), where it is written, its protocol record."""

    model: ImageClassifier
    plan: FreezePlan
    setting: dict
    out_dir: Path
    protocol: dict


@dataclass
class LabeledData:
    """The labeled training split, the validation split, the unlabeled images (None: the method uses none)."""

    train: object
    val: object
    unlabeled: Unlabeled | None = None


@dataclass
class History:
    """Validation top-1 per epoch, the kept epoch (``finetune.keep``: the best validation epoch or the last)
    and its validation top-1, training seconds, where it was written; with ``finetune.pseudo_label_accuracy``
    the study-only pseudo-label check of every validated epoch (``{"epoch", ...}``)."""

    out_dir: Path
    protocol: dict
    keep: str = "best"
    val_top1: list[float] = field(default_factory=list)
    kept_epoch: int = 0
    kept_val_top1: float = -1.0
    seconds: float = 0.0
    pseudo_label_study: list[dict] = field(default_factory=list)


@dataclass
class _Stepper:
    """What one training step uses: the model and its method's objective, the optimizer and schedule, the
    precision and memory layout, the labeled batches' augmentation, the unlabeled stream (None: no pool)."""

    model: ImageClassifier
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    channels_last: bool
    augment: torch.nn.Module
    stream: Iterator | None
    device: torch.device

    def step(self, batch, info) -> tuple[torch.Tensor, dict]:
        """One optimizer step on a labeled uint8 ``batch`` (and an unlabeled one from the stream)."""
        images = to_device_float(batch.images, info, self.device)
        images = to_memory_format(augment_on_device(self.augment, images), self.channels_last)
        labels = batch.labels.to(self.device, non_blocking=True)  # pinned on CUDA: no wait
        views = ()
        if self.stream is not None:
            pool = to_device_float(next(self.stream).images, info, self.device)
            views = tuple(to_memory_format(v, self.channels_last) for v in self.objective.views(pool))
        with self.precision.autocast():
            loss, stats = self.objective.loss(self.model, images, labels, views)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, self.optimizer)
        self.scheduler.step()
        return loss, stats


def fit_candidate(
    recipe: Recipe, options: LoopOptions, candidate: Candidate, data: LabeledData, device: torch.device
) -> History:
    """Train one candidate. Writes ``checkpoints/last.pt`` and ``checkpoints/best.pt``, the weights kept: the
    best validation epoch's, or with ``recipe.keep="last"`` the last epoch's (then its one validation score is
    not the highest of many noisy looks)."""
    sampler = EpochBatchSampler(len(data.train), recipe.batch_size, options.seed)
    epochs = finetune_epochs(recipe.epochs, candidate.setting.get("steps", recipe.steps), len(sampler))
    stepper, protocol = _stepper(recipe, options, candidate, data, device, epochs * len(sampler))
    every = validation_interval(recipe.val_every, epochs)
    protocol.update(epochs=epochs, val_every=every)
    model, info = stepper.model, classifier_info(stepper.model)
    loader = make_loader(data.train, sampler, options.num_workers, pin_memory=device.type == "cuda")
    writer = SummaryWriter(str(candidate.out_dir / "tb"))
    bar = progress_bar(epochs * len(sampler), "finetune", options.progress)
    history = History(candidate.out_dir, protocol, recipe.keep)
    step = 0
    try:
        for epoch in range(1, epochs + 1):
            sampler.set_epoch(epoch - 1)
            candidate.plan.train()
            t0 = time.perf_counter()
            for batch in loader:
                if len(batch.images) == 0:
                    continue
                loss, stats = stepper.step(batch, info)
                step += 1
                bar.update(1)
                if step % options.log_every == 0:
                    _log_step(writer, step, loss, stepper.optimizer, stats)
            history.seconds = round(history.seconds + time.perf_counter() - t0, 1)
            if epoch % every == 0 or epoch == epochs:
                threshold = stepper.objective.study_threshold
                _end_of_epoch(model, data.val, data.unlabeled, threshold, info, device, writer, epoch, history, bar)
        _finish(model, history, epochs, recipe.keep)
    finally:
        bar.close()
        writer.close()
    return history


def _stepper(
    recipe: Recipe, options: LoopOptions, candidate: Candidate, data: LabeledData, device: torch.device, steps: int
) -> tuple[_Stepper, dict]:
    """The candidate's :class:`_Stepper` for ``steps`` steps, and its protocol so far (layout, precision,
    schedule). The method says how many unlabeled images a step reads (none: no stream)."""
    model, setting = candidate.model.to(device), candidate.setting
    channels_last = resolve_channels_last(options.channels_last, device, model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    precision = resolve_precision(options.precision, device, warn=False)
    objective = recipe.method.objective(model, setting, options.seed, device)
    groups = candidate.plan.param_groups(setting["lr"], recipe.encoder_lr_mult, recipe.weight_decay)
    if objective.parameters:
        groups.append(
            {"params": objective.parameters, "lr": setting["lr"], "weight_decay": recipe.weight_decay, "name": "method"}
        )
    optimizer = make_finetune_optimizer(groups, recipe.optimizer, recipe.momentum, precision.needs_fused_optimizer)
    warmup = warmup_steps(recipe.warmup_steps, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, warmup, steps, 0.0))
    augment = finetune_augmentation(setting["augment"], model.image_size).to(device)
    unlabeled_batch = recipe.method.unlabeled_batch(setting, recipe.batch_size)
    stream = None
    if unlabeled_batch:
        pin = device.type == "cuda"
        stream = unlabeled_batches(data.unlabeled.pool, unlabeled_batch, options.seed + 1, options.num_workers, pin)
    protocol = {**candidate.protocol, "steps": steps, "channels_last": channels_last, "precision": precision.name}
    protocol["schedule"] = f"linear warm-up {warmup} steps, cosine to 0 over {steps} steps"
    stepper = _Stepper(model, objective, optimizer, scheduler, precision, channels_last, augment, stream, device)
    return stepper, protocol


def _log_step(writer: SummaryWriter, step: int, loss: torch.Tensor, optimizer, stats: dict) -> None:
    """The loss, the head's learning rate and the method's statistics (``unlabeled/<name>``) at ``step``."""
    writer.add_scalar("finetune/loss", loss.item(), step)
    writer.add_scalar("finetune/lr_head", optimizer.param_groups[0]["lr"], step)
    for name, value in stats.items():
        writer.add_scalar(f"unlabeled/{name}", float(value), step)


def _finish(model: ImageClassifier, history: History, epochs: int, keep: str) -> None:
    """``last.pt``, and with ``keep="last"`` the last epoch as the kept one (``best.pt``)."""
    _save(model, history.out_dir / "checkpoints" / "last.pt", epochs, history.val_top1[-1], history.protocol)
    if keep == "last":
        history.kept_epoch, history.kept_val_top1 = epochs, history.val_top1[-1]
        _save(model, history.out_dir / "checkpoints" / "best.pt", epochs, history.val_top1[-1], history.protocol)


def _end_of_epoch(model, val, unlabeled, threshold, info, device, writer, epoch: int, history: History, bar) -> None:
    """Validation top-1 (the best epoch's weights saved, unless the last epoch is kept), and the study-only
    pseudo-label check (predictions of at least ``threshold`` confidence)."""
    if len(val) == 0:  # too few labels to validate: nothing is chosen, the last epoch is kept
        history.val_top1.append(None)
        return
    val_top1 = accuracy(*predict_logits(model, val, device))
    history.val_top1.append(val_top1)
    writer.add_scalar("val/top1", val_top1, epoch)
    bar.set_postfix(val_top1=f"{val_top1:.2f}")
    if unlabeled is not None and unlabeled.study is not None:
        study = pseudo_label_accuracy(model, unlabeled.study, info, device, threshold)
        history.pseudo_label_study.append({"epoch": epoch, **{k: round(v, 2) for k, v in study.items()}})
        for name, value in study.items():
            writer.add_scalar(f"study/{name}", value, epoch)
    if history.keep == "best" and val_top1 > history.kept_val_top1:
        history.kept_val_top1, history.kept_epoch = val_top1, epoch
        _save(model, history.out_dir / "checkpoints" / "best.pt", epoch, val_top1, history.protocol)


def _save(model: ImageClassifier, path: Path, epoch: int, val_top1: float, protocol: dict) -> None:
    """A fine-tuning checkpoint: the classifier (loadable on its own by ``load_classifier``) and its epoch."""
    info = {"kind": "fine-tuned", "epoch": epoch, "val_top1": val_top1, "protocol": protocol}
    atomic_torch_save({"classifier": classifier_state(model, info), "epoch": epoch, "val_top1": val_top1}, path)
