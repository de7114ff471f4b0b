"""``metrics.json``: the final figures of a run."""

from __future__ import annotations

import resource

import torch

from .checkpoint import overflow_steps
from .gauges import gauge_summary
from .state import TrainingRun


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: allocated on a CUDA device, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def final_metrics(run: TrainingRun, dataset_size: int, digests: list[str], syncs: list[dict]) -> dict:
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
        metrics["fp16_overflow_steps"] = overflow_steps(run.wiring.precision)
    metrics.update({f"pretext_{k}": v for k, v in progress.last_metrics.items()})
    if run.reporters.online is not None:
        metrics.update({f"online_{k}": v for k, v in run.reporters.online.last.items()})
    if run.reporters.gauge is not None:
        metrics.update(gauge_summary(progress.gauges, progress.collapse_warning_step))
    return metrics
