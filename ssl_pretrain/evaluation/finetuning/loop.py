"""The training loop of one fine-tuning candidate: encoder + head on the labeled images, optionally with
FixMatch consistency or pretext tasks (S4L) on the unlabeled ones; validation top-1 after every epoch, the
best (or the last) epoch kept.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ...config import FinetuneConfig, listed
from ...data import EpochBatchSampler, make_loader, to_device_float
from ...tasks.draws import augment_on_device
from ...utils.files import atomic_torch_save
from ...utils.optim import warmup_cosine_factor
from ...utils.precision import resolve_channels_last, resolve_precision, to_memory_format
from ..shared.classifier import ImageClassifier, classifier_state
from ..shared.predict import accuracy, classifier_info, predict_logits
from .freezing import FreezePlan, make_finetune_optimizer
from .semi_supervised import (
    build_pretext,
    fixmatch_loss,
    pretext_head_parameters,
    pretext_loss,
    pseudo_label_accuracy,
    strong_augmentation,
    unlabeled_batches,
)


def finetune_augmentation(kind: str, size: int) -> torch.nn.Module:
    """Batched, per-sample random crop (padding size/8) and/or horizontal flip on the device; ``strong``: the
    RandAugment-style ops with cutout of :func:`~.semi_supervised.strong_augmentation`."""
    if kind == "strong":
        return strong_augmentation()
    ops = []
    if kind == "crop_flip":
        ops.append(K.RandomCrop((size, size), padding=max(1, size // 8), padding_mode="reflect"))
    if kind in ("flip", "crop_flip"):
        ops.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*ops) if ops else torch.nn.Identity()


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


def encoder_lr_mult(cfg: FinetuneConfig) -> float:
    """``finetune.backbone_lr_mult`` for pretrained layers; a randomly initialised encoder (the control)
    learns at the head's rate, as training from scratch would."""
    return cfg.backbone_lr_mult if cfg.init == "pretrained" else 1.0


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
class Unlabeled:
    """The unlabeled images of a semi-supervised candidate: the pool (labels removed) and, for studies only,
    a labeled copy of part of it that pseudo-labels are checked against outside the training step."""

    pool: object
    study: object | None = None


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


def fit_candidate(
    cfg: FinetuneConfig,
    options: LoopOptions,
    model: ImageClassifier,
    plan: FreezePlan,
    setting: dict,
    train,
    val,
    unlabeled: Unlabeled | None,
    device: torch.device,
    out_dir: Path,
    protocol: dict,
) -> History:
    """Train one candidate, ``setting``: its ``lr`` and ``augment``, and ``unlabeled_ratio`` (with FixMatch
    also ``threshold``) when semi-supervised (the weak view of the unlabeled images is always crop + flip).
    Writes ``checkpoints/last.pt`` and ``checkpoints/best.pt``, the weights kept: the best validation epoch's,
    or with ``finetune.keep=last`` the last epoch's (then its one validation score is not the highest of many
    noisy looks)."""
    model.to(device)
    channels_last = resolve_channels_last(options.channels_last, device, model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    precision = resolve_precision(options.precision, device, warn=False)
    lr = setting["lr"]
    groups = plan.param_groups(lr, encoder_lr_mult(cfg), cfg.weight_decay)
    pretext = None
    if unlabeled is not None and cfg.unlabeled == "pretext":
        pretext = build_pretext(cfg.pretext, model.encoder, len(unlabeled.pool), options.seed).to(device)
        heads = pretext_head_parameters(pretext)
        groups.append({"params": heads, "lr": lr, "weight_decay": cfg.weight_decay, "name": "pretext_heads"})
    optimizer = make_finetune_optimizer(groups, cfg.optimizer, cfg.momentum, precision.needs_fused_optimizer)
    sampler = EpochBatchSampler(len(train), cfg.batch_size, options.seed)
    epochs = finetune_epochs(cfg.epochs, cfg.steps, len(sampler))
    steps = epochs * len(sampler)
    warmup = warmup_steps(cfg.warmup_steps, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, warmup, steps, 0.0))
    every = validation_interval(cfg.val_every, epochs)
    protocol = {**protocol, "epochs": epochs, "steps": steps, "channels_last": channels_last, "val_every": every}
    protocol["precision"] = precision.name
    protocol["schedule"] = f"linear warm-up {warmup} steps, cosine to 0 over {steps} steps"
    info = classifier_info(model)
    augment = finetune_augmentation(setting["augment"], model.image_size).to(device)
    pin = device.type == "cuda"
    loader = make_loader(train, sampler, options.num_workers, pin_memory=pin)
    stream = strong = weak_view = None
    if unlabeled is not None:
        batch = max(1, round(setting["unlabeled_ratio"] * cfg.batch_size))
        stream = unlabeled_batches(unlabeled.pool, batch, options.seed + 1, options.num_workers, pin)
        strong = strong_augmentation().to(device) if pretext is None else None
        weak_view = finetune_augmentation("crop_flip", model.image_size).to(device)
    writer = SummaryWriter(str(out_dir / "tb"))
    bar = tqdm(total=steps, disable=not options.progress, dynamic_ncols=True, desc="finetune", file=sys.stderr)
    history = History(out_dir, protocol, cfg.keep)
    study_threshold = setting.get("threshold", listed(cfg.threshold)[0])
    step = 0
    try:
        for epoch in range(1, epochs + 1):
            sampler.set_epoch(epoch - 1)
            plan.train()
            t0 = time.perf_counter()
            for batch in loader:
                if len(batch.images) == 0:
                    continue
                images = to_device_float(batch.images, info, device)
                images = to_memory_format(augment_on_device(augment, images), channels_last)
                labels = batch.labels.to(device, non_blocking=True)  # pinned on CUDA: no wait
                if stream is not None:
                    pool = to_device_float(next(stream).images, info, device)
                    weak = to_memory_format(augment_on_device(weak_view, pool), channels_last)
                    if strong is not None:
                        hard = to_memory_format(augment_on_device(strong, pool), channels_last)
                with precision.autocast():
                    if stream is None:
                        loss, stats = F.cross_entropy(model(images), labels), {}
                    elif pretext is not None:
                        loss, stats = pretext_loss(model, pretext, images, labels, weak, cfg.unlabeled_weight)
                    else:
                        loss, stats = fixmatch_loss(
                            model, images, labels, weak, hard, setting["threshold"], cfg.unlabeled_weight
                        )
                optimizer.zero_grad(set_to_none=True)
                precision.backward_and_step(loss, optimizer)
                scheduler.step()
                step += 1
                bar.update(1)
                if step % options.log_every == 0:
                    writer.add_scalar("finetune/loss", loss.item(), step)
                    writer.add_scalar("finetune/lr_head", optimizer.param_groups[0]["lr"], step)
                    for name, value in stats.items():
                        writer.add_scalar(f"unlabeled/{name}", float(value), step)
            history.seconds = round(history.seconds + time.perf_counter() - t0, 1)
            if epoch % every == 0 or epoch == epochs:
                _end_of_epoch(model, val, unlabeled, study_threshold, info, device, writer, epoch, history, bar)
        _save(model, out_dir / "checkpoints" / "last.pt", epochs, history.val_top1[-1], protocol)
        if cfg.keep == "last":
            history.kept_epoch, history.kept_val_top1 = epochs, history.val_top1[-1]
            _save(model, out_dir / "checkpoints" / "best.pt", epochs, history.val_top1[-1], protocol)
    finally:
        bar.close()
        writer.close()
    return history


def _end_of_epoch(model, val, unlabeled, threshold, info, device, writer, epoch: int, history: History, bar) -> None:
    """Validation top-1 (the best epoch's weights saved, unless the last epoch is kept), and the study-only
    pseudo-label check (predictions of at least ``threshold`` confidence)."""
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
