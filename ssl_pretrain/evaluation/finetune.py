"""``ssl-pretrain finetune``: train encoder + linear head on labeled data with a freezing strategy.

Reads the encoder from ``probe.encoder`` (pretrained, or re-initialised with ``finetune.init=random``:
supervised training from scratch, the control), holds out a stratified validation split of the
(label-fraction) training labels, trains ``finetune.epochs`` epochs (or ``finetune.steps`` steps) with
on-device Kornia augmentation, logs per-epoch validation top-1 to TensorBoard, keeps
``checkpoints/best.pt`` (best validation top-1) and ``checkpoints/last.pt``, and reports in
``finetune.json`` the test top-1 of the checkpoint chosen on validation, with the protocol. Output:
``<encoder's run>/finetune/<finetune.name>/``.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
import time
from pathlib import Path

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..build import resolve_device
from ..config import Config, listed, save_config
from ..data import DataInfo, EpochBatchSampler, make_loader, to_device_float
from ..encoders import encoder_from_spec
from ..errors import BadInput
from ..runs import write_json
from ..train.checkpoint import atomic_torch_save
from ..train.optim import warmup_cosine_factor
from ..train.rng import seed_everything
from .auto_freeze import choose_freeze_point
from .classifier import ImageClassifier, classifier_state, restore_weights
from .encoder_source import load_encoder
from .freezing import FreezePlan, frozen_stages, make_finetune_optimizer, strategy_name
from .frozen import validation_scores
from .layer_view import LayerView, available_layers
from .logistic import LogisticProbe
from .predict import accuracy, classifier_info, predict_logits
from .probe import results_dir
from .selection import RULE as SELECTION_RULE
from .selection import Selection
from .splits import labeled_splits, validation_split


def finetune_augmentation(kind: str, size: int) -> torch.nn.Module:
    """Batched, per-sample random crop (padding size/8) and/or horizontal flip on the device."""
    ops = []
    if kind == "crop_flip":
        ops.append(K.RandomCrop((size, size), padding=max(1, size // 8), padding_mode="reflect"))
    if kind in ("flip", "crop_flip"):
        ops.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*ops) if ops else torch.nn.Identity()


def warmup_steps(configured: int, total: int) -> int:
    """Linear warm-up length: as configured, but at most a tenth of the run (small label fractions)."""
    return min(configured, total // 10)


def encoder_lr_mult(config: Config) -> float:
    """``finetune.backbone_lr_mult`` for pretrained layers; a randomly initialised encoder (the control)
    learns at the head's rate, as training from scratch would."""
    return config.finetune.backbone_lr_mult if config.finetune.init == "pretrained" else 1.0


def run_finetune(config: Config) -> dict:
    """Fine-tune; returns the report also written to ``finetune.json``.

    Every choice is made on the validation split: the epoch (the best validation epoch's weights are
    kept), the learning rate when ``finetune.lr`` lists several (one candidate run each, under
    ``candidates/``), the freeze point with ``auto``. The test set is scored once, for the choice; the
    last epoch's test top-1 is reported as a diagnostic only.
    """
    cfg = config.finetune
    if config.probe.encoder is None:
        raise BadInput("probe.encoder: is required: the run directory, encoder.pt or checkpoint to fine-tune")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    pretrained = load_encoder(config.probe.encoder)
    train, test = labeled_splits(config)
    train, val = validation_split(train, cfg.val_fraction, config.seed)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    out_dir = _finetune_dir(config)

    freeze_until, reason, layer_top1 = cfg.freeze_until, None, None
    if freeze_until == "auto":
        freeze_until, reason, layer_top1 = _auto_freeze_point(config, pretrained, train, val, num_classes, device)
        print(f"finetune.freeze_until=auto -> {freeze_until}: {reason}")
    frozen_stages(pretrained, freeze_until)  # an unknown stage is a config error before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    rates = listed(cfg.lr)
    histories = []
    for lr in rates:
        torch.manual_seed(config.seed)
        encoder = copy.deepcopy(pretrained) if cfg.init == "pretrained" else encoder_from_spec(pretrained.spec)
        model = ImageClassifier(encoder, num_classes, 1 if cfg.head == "gap" else None, pretrained.spec["image_size"])
        plan = FreezePlan(model, freeze_until, cfg.freeze_bn)
        protocol = _protocol(config, plan, model, freeze_until, reason, train, val, test, lr)
        if layer_top1 is not None:
            protocol["auto_probe_val_top1"] = layer_top1
        run_dir = out_dir if len(rates) == 1 else out_dir / "candidates" / f"lr{lr:g}"
        histories.append(_fit(config, model, plan, lr, train, val, device, run_dir, protocol))
    selection = Selection.from_scores(
        [{"lr": lr, "epoch": h["best_epoch"]} for lr, h in zip(rates, histories, strict=True)],
        [h["best_val_top1"] for h in histories],
        f"stratified {cfg.val_fraction:g} of the labeled training images ({len(val)}; seed {config.seed})",
    )
    chosen = histories[rates.index(selection.chosen["lr"])]
    if len(rates) > 1:
        _adopt_candidate(chosen["dir"], out_dir)
    selection.test_top1 = _test_top1(model, out_dir / "checkpoints" / "best.pt", test, device)
    report = {
        "test_top1": selection.test_top1,
        "val_top1": selection.val_top1,
        "best_epoch": chosen["best_epoch"],
        "val_top1_per_epoch": chosen["val_top1"],
        "selected": selection.to_dict(),
        "diagnostics": {
            "test_top1_last_epoch": _test_top1(model, out_dir / "checkpoints" / "last.pt", test, device),
            "note": "not used for any choice",
        },
        "train_seconds": round(sum(h["seconds"] for h in histories), 1),
        "protocol": {**chosen["protocol"], "lr_candidates": rates},
    }
    write_json(out_dir / "finetune.json", report)
    print(
        f"fine-tuned ({report['protocol']['strategy']}, {cfg.init} init, lr {selection.chosen['lr']:g}): test top-1 "
        f"{report['test_top1']:.2f}% at the best validation epoch {chosen['best_epoch']} "
        f"(validation {selection.val_top1:.2f}%); last epoch {report['diagnostics']['test_top1_last_epoch']:.2f}% "
        "(diagnostic)"
    )
    print(f"finetune.json, checkpoints/best.pt, checkpoints/last.pt and tb/ written to {out_dir}")
    return report


def _test_top1(model: ImageClassifier, path: Path, test, device: torch.device) -> float:
    restore_weights(model, torch.load(path, weights_only=True)["classifier"], path)
    return accuracy(*predict_logits(model.to(device), test, device))


def _adopt_candidate(candidate: Path, out_dir: Path) -> None:
    """The chosen candidate's checkpoints become the run's (hard links, or copies across filesystems)."""
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt"):
        target = out_dir / "checkpoints" / name
        try:
            os.link(candidate / "checkpoints" / name, target)
        except OSError:
            shutil.copyfile(candidate / "checkpoints" / name, target)


def _finetune_dir(config: Config) -> Path:
    cfg = config.finetune
    name = cfg.name
    if name is None:
        fraction = config.data.label_fraction
        name = f"{cfg.freeze_until or 'full'}-labels{fraction:g}-{cfg.init}"
    out_dir = results_dir(Path(config.probe.encoder)) / "finetune" / name
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"finetune.name: {out_dir} already holds a fine-tuning run; choose another finetune.name")
    return out_dir


def _auto_freeze_point(config: Config, encoder, train, val, num_classes: int, device):
    """Multi-layer probe on (a sample of) the labeled training split, scored on the validation split."""
    cfg = config.finetune
    sample = train
    if len(train) > cfg.auto_probe_images:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
        sample = train.subset(order[: cfg.auto_probe_images].sort().values)
    view = LayerView(encoder, available_layers(encoder), config.probe.layer_dim, encoder.spec["image_size"])
    info = DataInfo.from_spec(encoder.spec)
    method = LogisticProbe([listed(config.probe.l2)[0]], config.probe.max_iter)
    layer_top1 = validation_scores(view, sample, val, info, device, method, config.probe.batch_size)
    per_class = len(train) / num_classes
    freeze_until, reason = choose_freeze_point(layer_top1, encoder.stage_names, per_class, cfg.small_per_class)
    return freeze_until, reason, layer_top1


def _fit(config: Config, model: ImageClassifier, plan: FreezePlan, lr: float, train, val, device, out_dir, protocol):
    """Train one candidate; keeps ``checkpoints/best.pt`` (best validation epoch) and ``last.pt`` in
    ``out_dir``. Returns its history: validation top-1 per epoch, the best epoch and its score, seconds."""
    cfg = config.finetune
    model.to(device)
    optimizer = make_finetune_optimizer(
        plan.param_groups(lr, encoder_lr_mult(config), cfg.weight_decay), cfg.optimizer, cfg.momentum
    )
    sampler = EpochBatchSampler(len(train), cfg.batch_size, config.seed)
    epochs = finetune_epochs(cfg.epochs, cfg.steps, len(sampler))
    steps = epochs * len(sampler)
    warmup = warmup_steps(cfg.warmup_steps, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, warmup, steps, 0.0))
    protocol = {**protocol, "epochs": epochs, "steps": steps}
    protocol["schedule"] = f"linear warm-up {warmup} steps, cosine to 0 over {steps} steps"
    info = classifier_info(model)
    augment = finetune_augmentation(cfg.augment, model.image_size).to(device)
    loader = make_loader(train, sampler, config.data.num_workers, pin_memory=device.type == "cuda")
    writer = SummaryWriter(str(out_dir / "tb"))
    bar = tqdm(total=steps, disable=not config.trainer.progress, dynamic_ncols=True, desc="finetune", file=sys.stderr)
    history = {"val_top1": [], "best_epoch": 0, "best_val_top1": -1.0, "seconds": 0.0, "dir": out_dir}
    step = 0
    try:
        for epoch in range(1, epochs + 1):
            sampler.set_epoch(epoch - 1)
            plan.train()
            t0 = time.perf_counter()
            for batch in loader:
                if len(batch.images) == 0:
                    continue
                images = augment(to_device_float(batch.images, info, device))
                loss = F.cross_entropy(model(images), batch.labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                bar.update(1)
                if step % config.trainer.log_every == 0:
                    writer.add_scalar("finetune/loss", loss.item(), step)
                    writer.add_scalar("finetune/lr_head", optimizer.param_groups[0]["lr"], step)
            history["seconds"] = round(history["seconds"] + time.perf_counter() - t0, 1)
            val_top1 = accuracy(*predict_logits(model, val, device))
            history["val_top1"].append(val_top1)
            writer.add_scalar("val/top1", val_top1, epoch)
            bar.set_postfix(val_top1=f"{val_top1:.2f}")
            if val_top1 > history["best_val_top1"]:
                history["best_val_top1"], history["best_epoch"] = val_top1, epoch
                _save(model, out_dir / "checkpoints" / "best.pt", epoch, val_top1, protocol)
        _save(model, out_dir / "checkpoints" / "last.pt", epochs, history["val_top1"][-1], protocol)
    finally:
        bar.close()
        writer.close()
    history["protocol"] = protocol
    return history


def finetune_epochs(epochs: int, steps: int | None, steps_per_epoch: int) -> int:
    """``finetune.epochs``, or with ``finetune.steps`` the epochs that hold at least that many steps (a
    budget in steps suits every label fraction: 1% of the labels is 4 steps an epoch at batch 128)."""
    return epochs if steps is None else max(1, math.ceil(steps / steps_per_epoch))


def _save(model: ImageClassifier, path: Path, epoch: int, val_top1: float, protocol: dict) -> None:
    """A fine-tuning checkpoint: the classifier (loadable on its own by ``load_classifier``) and its epoch."""
    info = {"kind": "fine-tuned", "epoch": epoch, "val_top1": val_top1, "protocol": protocol}
    atomic_torch_save({"classifier": classifier_state(model, info), "epoch": epoch, "val_top1": val_top1}, path)


def _protocol(config, plan, model, freeze_until, reason, train, val, test, lr: float) -> dict:
    cfg = config.finetune
    return {
        "strategy": strategy_name(freeze_until),
        "freeze_until": freeze_until,
        "auto_reason": reason,
        "frozen_stages": plan.stages,
        **plan.counts(),
        "init": cfg.init,
        "head": model.head_description,
        "lr_head": lr,
        "lr_encoder": lr * encoder_lr_mult(config),
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "batch_size": cfg.batch_size,
        "freeze_bn": cfg.freeze_bn,
        "augmentation": cfg.augment,
        "label_fraction": config.data.label_fraction,
        "train_split": f"{train.description}, {len(train)} images",
        "val_split": f"stratified {cfg.val_fraction:g} of the labeled training images, {len(val)} images",
        "val_fraction": cfg.val_fraction,
        "selection": SELECTION_RULE,
        "test_split": f"{test.description}, {len(test)} images",
        "image_size": model.image_size,
        "encoder_source": str(config.probe.encoder),
        "backbone": model.encoder.spec["backbone"],
        "seed": config.seed,
    }
