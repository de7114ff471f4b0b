"""The pretraining loop, read top to bottom: data -> task -> run directory -> steps -> export.

Every step: a uint8 batch goes to the device, becomes float in [0, 1], the task builds its own
supervision there (Kornia, per-sample random parameters), one optimizer step follows.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from ..build import make_encoder, make_task, resolve_device
from ..config import Config, save_config
from ..data import EpochBatchSampler, data_info, make_loader, open_split, to_device_float
from ..errors import BadInput
from ..runs import check_run_dir, checkpoint_path, write_json
from .checkpoint import FORMAT, atomic_torch_save, keep_snapshot, load_checkpoint, load_state_strict
from .export import export_encoder
from .online_eval import OnlineEvaluator
from .optim import make_optimizer, make_scheduler
from .rng import rng_state, seed_everything, set_rng_state


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    skipped_images: int = 0
    last_metrics: dict = field(default_factory=dict)


def total_steps(config: Config, steps_per_epoch: int) -> int:
    steps = config.trainer.epochs * steps_per_epoch
    return min(steps, config.trainer.max_steps) if config.trainer.max_steps else steps


def pretrain(config: Config, resume: bool = False) -> Path:
    """Run (or resume) a pretraining; returns the run directory."""
    resume = resume or config.trainer.resume
    device = resolve_device(config.device)
    seed_everything(config.seed)
    info = data_info(config.data)
    task = make_task(config, make_encoder(config, info)).to(device)
    dataset = open_split(config.data, "pretrain")
    chosen = task.select_images(len(dataset), config.seed)
    if chosen is not None:
        dataset = dataset.subset(chosen)
    run_dir = check_run_dir(config, resume)
    online = OnlineEvaluator(config, info, device) if config.online.every else None

    sampler = EpochBatchSampler(len(dataset), config.trainer.batch_size, config.seed)
    loader = make_loader(dataset, sampler, config.data.num_workers, pin_memory=device.type == "cuda")
    steps = total_steps(config, len(sampler))
    optimizer = make_optimizer(task, config.trainer)
    scheduler = make_scheduler(optimizer, config.trainer, steps)
    progress = Progress()
    if resume:
        progress = _restore(checkpoint_path(run_dir), task, optimizer, scheduler)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")  # on resume: only once the checkpoint has loaded

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=progress.step + 1 if resume else None)
    bar = tqdm(
        total=steps,
        initial=progress.step,
        disable=not config.trainer.progress,
        dynamic_ncols=True,
        desc=f"pretrain {config.task.name}",
        file=sys.stderr,
    )
    save = lambda: _save_checkpoint(run_dir, config, task, optimizer, scheduler, progress)  # noqa: E731
    try:
        _train(
            config,
            task,
            loader,
            sampler,
            info,
            device,
            optimizer,
            scheduler,
            progress,
            steps,
            writer,
            bar,
            save,
            online,
        )
    finally:
        bar.close()
        writer.close()
    save()
    export_encoder(task.encoder, run_dir)
    metrics = _final_metrics(config, progress, len(dataset))
    if online is not None:
        metrics.update({f"online_{k}": v for k, v in online.last.items()})
    write_json(run_dir / "metrics.json", metrics)
    return run_dir


def _train(
    config, task, loader, sampler, info, device, optimizer, scheduler, progress, steps, writer, bar, save, online=None
):
    cfg = config.trainer
    window_images, window_start = 0, time.perf_counter()
    task.train()
    while progress.step < steps:
        sampler.set_epoch(progress.epoch, progress.batch_in_epoch)
        epoch_skipped: list[str] = []
        for batch in loader:
            progress.batch_in_epoch += 1
            epoch_skipped.extend(batch.skipped)
            if len(batch.images) == 0:
                continue
            t0 = time.perf_counter()
            images = to_device_float(batch.images, info, device)
            inputs, targets = task.make_batch(images, batch.indices.to(device))
            outputs = task(inputs)
            loss, metrics = task.loss(outputs, targets)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {progress.step + 1}; the last good "
                    "checkpoint is kept (lower trainer.lr?)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            progress.train_seconds += time.perf_counter() - t0
            progress.step += 1
            progress.images_seen += len(images)
            window_images += len(images)
            progress.last_metrics = {"loss": loss.item(), **{k: float(v) for k, v in metrics.items()}}
            bar.update(1)
            if progress.step % cfg.log_every == 0 or progress.step == steps:
                rate = window_images / max(1e-9, time.perf_counter() - window_start)
                _log_scalars(writer, progress, optimizer, rate)
                bar.set_postfix(loss=f"{progress.last_metrics['loss']:.4f}", img_s=f"{rate:.0f}")
                window_images, window_start = 0, time.perf_counter()
            if progress.step % cfg.image_every == 0 or progress.step == 1:
                _log_images(writer, task, inputs, targets, outputs, progress.step)
            if online is not None and online.due(progress.step, progress.epoch, epoch_ended=False):
                _online_eval(online, task, progress, writer, bar)
                window_start = time.perf_counter()
            if progress.step % cfg.checkpoint_every == 0 and progress.step < steps:
                save()
            if progress.step >= steps:
                break
        _report_skipped(epoch_skipped, progress, loader.dataset)
        if progress.batch_in_epoch >= len(sampler):
            progress.epoch += 1
            progress.batch_in_epoch = 0
            if online is not None and online.due(progress.step, progress.epoch, epoch_ended=True):
                _online_eval(online, task, progress, writer, bar)
                window_start = time.perf_counter()


def _online_eval(online, task, progress: Progress, writer, bar) -> None:
    results = online.run(task.encoder, progress.step, writer)
    bar.set_postfix(loss=f"{progress.last_metrics['loss']:.4f}", **{k: f"{v:.2f}" for k, v in results.items()})


def _report_skipped(skipped: list[str], progress: Progress, dataset) -> None:
    if not skipped:
        return
    progress.skipped_images += len(skipped)
    if len(skipped) >= len(dataset):
        raise BadInput(f"data.root: none of the {len(dataset)} image files could be read (e.g. {skipped[0]})")
    tqdm.write(
        f"warning: skipped {len(skipped)} unreadable image file(s) in epoch {progress.epoch + 1} (e.g. {skipped[0]})",
        file=sys.stderr,
    )


def _log_scalars(writer: SummaryWriter, progress: Progress, optimizer, rate: float) -> None:
    for name, value in progress.last_metrics.items():
        writer.add_scalar(f"train/{name}", value, progress.step)
    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], progress.step)
    writer.add_scalar("train/images_per_s", rate, progress.step)


@torch.no_grad()
def _log_images(writer: SummaryWriter, task, inputs, targets, outputs, step: int) -> None:
    for name, images in task.previews(inputs, targets, outputs).items():
        grid = make_grid(images.detach().float().cpu().flatten(0, 1), nrow=images.shape[1], pad_value=1.0)
        writer.add_image(name, grid, step)


def _save_checkpoint(run_dir: Path, config: Config, task, optimizer, scheduler, progress: Progress) -> None:
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "encoder_spec": task.encoder.spec,
        "model": task.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": progress.step,
        "epoch": progress.epoch,
        "batch_in_epoch": progress.batch_in_epoch,
        "images_seen": progress.images_seen,
        "train_seconds": progress.train_seconds,
        "skipped_images": progress.skipped_images,
        "rng": rng_state(),
        "metrics": progress.last_metrics,
    }
    atomic_torch_save(state, checkpoint_path(run_dir))
    keep_snapshot(checkpoint_path(run_dir), progress.step, config.trainer.keep_last)


def _restore(path: Path, task, optimizer, scheduler) -> Progress:
    ckpt = load_checkpoint(path)
    load_state_strict(
        task, ckpt["model"], path, f"the configured model ({task.encoder.spec['backbone']} + {type(task).__name__})"
    )
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (ValueError, KeyError) as err:
        raise BadInput(f"{path}: optimizer state does not match trainer.optimizer ({err})") from None
    set_rng_state(ckpt["rng"])
    return Progress(
        ckpt["step"],
        ckpt["epoch"],
        ckpt["batch_in_epoch"],
        ckpt["images_seen"],
        ckpt["train_seconds"],
        ckpt["skipped_images"],
        dict(ckpt["metrics"]),
    )


def _final_metrics(config: Config, progress: Progress, dataset_size: int) -> dict:
    metrics = {
        "task": config.task.name,
        "backbone": config.model.backbone,
        "steps": progress.step,
        "epochs": round(progress.images_seen / dataset_size, 3),
        "images_seen": progress.images_seen,
        "train_seconds": round(progress.train_seconds, 2),
        "images_per_s": round(progress.images_seen / max(1e-9, progress.train_seconds), 1),
        "skipped_images": progress.skipped_images,
    }
    metrics.update({f"pretext_{k}": v for k, v in progress.last_metrics.items()})
    return metrics
