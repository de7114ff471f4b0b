"""``ssl-pretrain finetune``: train encoder + linear head on labeled data with a freezing strategy.

Reads the encoder from ``probe.encoder`` (pretrained, or re-initialised with ``finetune.init=random``
as the same-budget control), holds out a stratified validation split of the (label-fraction) training
labels, trains ``finetune.epochs`` epochs with on-device Kornia augmentation, logs per-epoch validation
top-1 to TensorBoard, keeps ``checkpoints/best.pt`` (best validation top-1) and ``checkpoints/last.pt``,
and reports test top-1 of both in ``finetune.json`` with the protocol. Output:
``<encoder's run>/finetune/<finetune.name>/``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..build import resolve_device
from ..config import Config, save_config
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
from .freezing import FreezePlan, make_finetune_optimizer, strategy_name
from .layer_view import LayerView, available_layers
from .predict import accuracy, classifier_info, predict_logits
from .probe import evaluate_encoder, logistic_top1, results_dir
from .splits import labeled_splits, stratified_split


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


def validation_split(train, fraction: float, seed: int):
    """``(train, val)``: a stratified ``fraction`` of every class held out, fixed by ``seed``."""
    keep, held = stratified_split(train.labels, fraction, seed)
    return train.subset(keep), train.subset(held)


def run_finetune(config: Config) -> dict:
    """Fine-tune; returns the report also written to ``finetune.json``."""
    cfg = config.finetune
    if config.probe.encoder is None:
        raise BadInput("probe.encoder: is required: the run directory, encoder.pt or checkpoint to fine-tune")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    pretrained = load_encoder(config.probe.encoder)
    spec = pretrained.spec
    train, test = labeled_splits(config)
    train, val = validation_split(train, cfg.val_fraction, config.seed)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    out_dir = _finetune_dir(config)

    freeze_until, reason = cfg.freeze_until, None
    if freeze_until == "auto":
        freeze_until, reason, layer_top1 = _auto_freeze_point(config, pretrained, train, val, num_classes, device)
        print(f"finetune.freeze_until=auto -> {freeze_until}: {reason}")
    torch.manual_seed(config.seed)
    encoder = pretrained if cfg.init == "pretrained" else encoder_from_spec(spec)
    model = ImageClassifier(encoder, num_classes, 1 if cfg.head == "gap" else None, spec["image_size"])
    plan = FreezePlan(model, freeze_until, cfg.freeze_bn)
    model.to(device)
    groups = plan.param_groups(cfg.lr, encoder_lr_mult(config), cfg.weight_decay)
    optimizer = make_finetune_optimizer(groups, cfg.optimizer, cfg.momentum)
    sampler = EpochBatchSampler(len(train), cfg.batch_size, config.seed)
    steps = cfg.epochs * len(sampler)
    warmup = warmup_steps(cfg.warmup_steps, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, warmup, steps, 0.0))

    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    protocol = _protocol(config, plan, model, freeze_until, reason, train, val, test)
    protocol["schedule"] = f"linear warm-up {warmup} steps, cosine to 0 over {steps} steps"
    if reason is not None:
        protocol["auto_probe_top1"] = layer_top1
    history = _train(config, model, plan, optimizer, scheduler, sampler, train, val, device, out_dir, protocol)

    results = {}
    for which in ("best", "last"):
        path = out_dir / "checkpoints" / f"{which}.pt"
        restore_weights(model, torch.load(path, weights_only=True)["classifier"], path)
        results[f"test_top1_{which}"] = accuracy(*predict_logits(model, test, device))
    report = {
        **results,
        "best_epoch": history["best_epoch"],
        "val_top1": history["val_top1"],
        "train_seconds": history["seconds"],
        "protocol": protocol,
    }
    write_json(out_dir / "finetune.json", report)
    print(
        f"fine-tuned ({protocol['strategy']}, {cfg.init} init): test top-1 {results['test_top1_best']:.2f}% "
        f"(best validation epoch {history['best_epoch']}), {results['test_top1_last']:.2f}% (last epoch)"
    )
    print(f"finetune.json, checkpoints/best.pt, checkpoints/last.pt and tb/ written to {out_dir}")
    return report


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
    rows = evaluate_encoder("pretrained", view, sample, val, info, config, device, logistic_top1)
    layer_top1 = {row["layer"]: row["top1"] for row in rows}
    per_class = len(train) / num_classes
    freeze_until, reason = choose_freeze_point(layer_top1, encoder.stage_names, per_class, cfg.small_per_class)
    return freeze_until, reason, layer_top1


def _train(config, model, plan, optimizer, scheduler, sampler, train, val, device, out_dir, protocol) -> dict:
    cfg = config.finetune
    info = classifier_info(model)
    augment = finetune_augmentation(cfg.augment, model.image_size).to(device)
    loader = make_loader(train, sampler, config.data.num_workers, pin_memory=device.type == "cuda")
    writer = SummaryWriter(str(out_dir / "tb"))
    bar = tqdm(
        total=cfg.epochs * len(sampler),
        disable=not config.trainer.progress,
        dynamic_ncols=True,
        desc="finetune",
        file=sys.stderr,
    )
    history = {"val_top1": [], "best_epoch": 0, "seconds": 0.0}
    best = -1.0
    step = 0
    try:
        for epoch in range(1, cfg.epochs + 1):
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
            if val_top1 > best:
                best, history["best_epoch"] = val_top1, epoch
                _save(model, out_dir / "checkpoints" / "best.pt", epoch, val_top1, protocol)
        _save(model, out_dir / "checkpoints" / "last.pt", cfg.epochs, history["val_top1"][-1], protocol)
    finally:
        bar.close()
        writer.close()
    return history


def _save(model: ImageClassifier, path: Path, epoch: int, val_top1: float, protocol: dict) -> None:
    """A fine-tuning checkpoint: the classifier (loadable on its own by ``load_classifier``) and its epoch."""
    info = {"kind": "fine-tuned", "epoch": epoch, "val_top1": val_top1, "protocol": protocol}
    atomic_torch_save({"classifier": classifier_state(model, info), "epoch": epoch, "val_top1": val_top1}, path)


def _protocol(config, plan, model, freeze_until, reason, train, val, test) -> dict:
    cfg = config.finetune
    return {
        "strategy": strategy_name(freeze_until),
        "freeze_until": freeze_until,
        "auto_reason": reason,
        "frozen_stages": plan.stages,
        **plan.counts(),
        "init": cfg.init,
        "head": model.head_description,
        "lr_head": cfg.lr,
        "lr_encoder": cfg.lr * encoder_lr_mult(config),
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "freeze_bn": cfg.freeze_bn,
        "augmentation": cfg.augment,
        "label_fraction": config.data.label_fraction,
        "train_split": f"{train.description}, {len(train)} images",
        "val_split": f"stratified {cfg.val_fraction:g} of the labeled training images, {len(val)} images",
        "test_split": f"{test.description}, {len(test)} images",
        "image_size": model.image_size,
        "encoder_source": str(config.probe.encoder),
        "backbone": model.encoder.spec["backbone"],
        "seed": config.seed,
    }
