"""Fine-tuning that also learns from the unlabeled images: FixMatch consistency (Sohn et al. 2020), or a
pretext task kept on during fine-tuning (S4L, Zhai et al. 2019).

FixMatch:

Each step takes a labeled batch of ``B`` images and ``ratio x B`` unlabeled ones (labels removed before
they are loaded). The model's prediction on a weakly augmented view (flip + crop) of an unlabeled image,
where its confidence reaches ``threshold``, becomes the pseudo-label that a strongly augmented view of the
same image (RandAugment-style photometric and geometric ops, then cutout, per-sample parameters, Kornia on
the device) is trained towards. The weak view goes through the model without gradients (its predictions are
targets, so no backward pass is spent on them); labeled and strong views share one forward pass. Loss:
``CE(labeled) + weight * mean(mask * CE(strong, pseudo-label))``.

S4L (``finetune.unlabeled=pretext``): the pretext tasks of ``finetune.pretext`` (rotation by default), with
fresh heads on the classifier's own encoder, build their batches on the device from the labeled and the
unlabeled images together (both in their weak view); loss ``CE(labeled) + weight * sum_k w_k * pretext_k``.

The unlabeled pool is every training image except the validation split (kept out so that the choices made
on it stay honest) and the test set (never in the training split).
"""

from __future__ import annotations

from collections.abc import Iterator

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from ...data import DataInfo, EpochBatchSampler, make_loader, to_device_float
from ...errors import ConfigError
from ...tasks import MultiTask

STRONG_OPS = "flip, affine, brightness, contrast, sharpness, posterize, solarize, equalize, then cutout"


def strong_augmentation() -> nn.Module:
    """Per-sample strong augmentation on the device: each op fires with its own probability per image."""
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(),
        K.RandomAffine(degrees=30.0, translate=(0.125, 0.125), shear=(-15.0, 15.0), p=0.7, padding_mode="reflection"),
        K.RandomBrightness((0.5, 1.5), p=0.5),
        K.RandomContrast((0.5, 1.5), p=0.5),
        K.RandomSharpness(0.9, p=0.4),
        K.RandomPosterize((3, 6), p=0.3),
        K.RandomSolarize(0.1, 0.1, p=0.2),
        K.RandomEqualize(p=0.2),
        K.RandomErasing(scale=(0.05, 0.2), ratio=(0.5, 2.0), value=0.5, p=1.0),
    )


def unlabeled_pool(train_split, val):
    """The training split's images outside the validation split, with every label removed."""
    keep = ~torch.isin(train_split.origin, val.origin)
    return train_split.subset(keep.nonzero().flatten()).without_labels()


def unlabeled_batches(pool, batch_size: int, seed: int, num_workers: int, pin_memory: bool) -> Iterator:
    """uint8 batches of ``pool`` without end, reshuffled every pass (order a function of the seed)."""
    sampler = EpochBatchSampler(len(pool), batch_size, seed)
    loader = make_loader(pool, sampler, num_workers, pin_memory)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            if len(batch.images):
                yield batch
        epoch += 1


def fixmatch_loss(
    model: nn.Module,
    labeled: torch.Tensor,
    labels: torch.Tensor,
    weak: torch.Tensor,
    strong: torch.Tensor,
    threshold: float,
    weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Supervised + masked pseudo-label loss; ``labeled (B, C, S, S)``, ``weak``/``strong (U, C, S, S)`` two views
    of the same unlabeled images. Returns the loss and detached statistics (share of pseudo-labels kept, mean
    confidence, each part of the loss)."""
    n = len(labeled)
    with torch.no_grad():  # the pseudo-labels are targets: no backward pass through the weak view
        probs = model(weak).float().softmax(dim=1)
    logits = model(torch.cat([labeled, strong]))
    supervised = F.cross_entropy(logits[:n], labels)
    confidence, pseudo = probs.max(dim=1)
    mask = (confidence >= threshold).float()
    consistency = (F.cross_entropy(logits[n:], pseudo, reduction="none") * mask).mean()
    stats = {
        "pseudo_label_rate": mask.mean(),
        "confidence": confidence.mean(),
        "supervised_loss": supervised.detach(),
        "consistency_loss": consistency.detach(),
    }
    return supervised + weight * consistency, stats


def build_pretext(entries: list[dict], encoder: nn.Module, pool_size: int, seed: int) -> MultiTask:
    """The pretext tasks of ``finetune.pretext`` (completed ``task.tasks``-style entries) on ``encoder``, the
    fine-tuned classifier's own (shared, not copied), each with a fresh head. A task that trains on a subset
    of the images (Exemplar with a fixed ``num_seeds``) is refused: every unlabeled image is new to it."""
    task = MultiTask(encoder, tasks=entries)
    for i, sub in enumerate(task.subtasks.values()):
        if sub.select_images(pool_size, seed) is not None:
            message = "trains on a subset of the images; for exemplar: num_seeds: null"
            raise ConfigError(f"finetune.pretext[{i}]", message)
    return task


def pretext_head_parameters(task: MultiTask) -> list[nn.Parameter]:
    """The parameters of ``task`` outside its (shared) encoder: what the optimizer must add."""
    shared = {id(p) for p in task.encoder.parameters()}
    return [p for p in task.parameters() if id(p) not in shared]


def pretext_loss(
    model: nn.Module,
    task: MultiTask,
    labeled: torch.Tensor,
    labels: torch.Tensor,
    unlabeled: torch.Tensor,
    weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Supervised loss on ``labeled (B, C, S, S)`` plus ``weight`` x the pretext loss on the labeled and
    ``unlabeled (U, C, S, S)`` images together. Returns the loss and detached statistics (each part of the
    loss, every pretext task's own metrics as ``pretext/<task>/<metric>``)."""
    supervised = F.cross_entropy(model(labeled), labels)
    images = torch.cat([labeled, unlabeled])
    inputs, targets = task.make_batch(images, torch.arange(len(images), device=images.device))
    pretext, metrics = task.loss(task(inputs), targets)
    stats = {"supervised_loss": supervised.detach(), "pretext_loss": pretext.detach()}
    stats.update({f"pretext/{name}": value for name, value in metrics.items()})
    return supervised + weight * pretext, stats


@torch.no_grad()
def pseudo_label_accuracy(model: nn.Module, study, info: DataInfo, device, threshold: float) -> dict[str, float]:
    """For studies only: how often the confident pseudo-labels of un-augmented unlabeled images are right,
    the share of images that get one (coverage), and how often the prediction is right for every image,
    confident or not; from a labeled copy of (part of) the pool kept apart from training. Never used for
    training or choices."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    sampler = EpochBatchSampler(len(study), 512, seed=0, shuffle=False, drop_last=False)
    right = kept = total = correct = 0
    for batch in make_loader(study, sampler, 0, pin_memory=False):
        probs = model(to_device_float(batch.images, info, device)).float().softmax(dim=1).cpu()
        confidence, predicted = probs.max(dim=1)
        chosen = confidence >= threshold
        kept += int(chosen.sum())
        right += int((predicted[chosen] == batch.labels[chosen]).sum())
        correct += int((predicted == batch.labels).sum())
        total += len(batch.labels)
    for module, training in modes.items():
        module.train(training)
    return {
        "pseudo_label_accuracy": 100.0 * right / max(1, kept),
        "pseudo_label_coverage": 100.0 * kept / max(1, total),
        "prediction_accuracy": 100.0 * correct / max(1, total),
    }
