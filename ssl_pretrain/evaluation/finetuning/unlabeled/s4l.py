"""S4L (Zhai et al. 2019): pretext tasks kept on while fine-tuning, on the labeled and unlabeled images.

The pretext tasks of ``tasks`` (rotation by default; ``task.tasks``-style entries), with fresh heads on the
classifier's own encoder, build their batches on the device from the labeled and the unlabeled images
together (both in their weak view, crop + flip); loss ``CE(labeled) + weight * sum_k w_k * pretext_k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....errors import ConfigError
from ....tasks import MultiTask, PretextTask
from ....utils.draws import augment_on_device
from ..augment import finetune_augmentation
from .base import Objective, PoolMethod


def build_pretext(entries: list[dict], encoder: nn.Module, pool_size: int, seed: int) -> MultiTask:
    """The pretext tasks of ``entries`` (completed ``task.tasks``-style entries) on ``encoder``, the
    fine-tuned classifier's own (shared, not copied), each with a fresh head. A task that trains on a subset
    of the images (Exemplar with a fixed ``num_seeds``) is refused: every unlabeled image is new to it."""
    task = MultiTask(encoder, tasks=entries)
    for i, sub in enumerate(task.subtasks.values()):
        if sub.select_images(pool_size, seed) is not None:
            message = "trains on a subset of the images; for exemplar: num_seeds: null"
            raise ConfigError(f"finetune.unlabeled.tasks[{i}]", message)
        if type(sub).after_step is not PretextTask.after_step:  # e.g. BYOL's momentum teacher
            message = f"{entries[i]['name']} updates itself after each step (a momentum teacher), which S4L does not do"
            raise ConfigError(f"finetune.unlabeled.tasks[{i}]", message)
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
    pretext, metrics = task.loss_in_fp32(task(inputs), targets)
    stats = {"supervised_loss": supervised.detach(), "pretext_loss": pretext.detach()}
    stats.update({f"pretext/{name}": value for name, value in metrics.items()})
    return supervised + weight * pretext, stats


class S4LObjective(Objective):
    def __init__(self, task: MultiTask, image_size: int, weight: float, device: torch.device):
        self.task = task.to(device)
        self.parameters = pretext_head_parameters(task)
        self.weak = finetune_augmentation("crop_flip", image_size).to(device)
        self.weight = weight

    def views(self, pool: torch.Tensor) -> tuple[torch.Tensor]:
        return (augment_on_device(self.weak, pool),)

    def loss(self, model, images, labels, views):
        return pretext_loss(model, self.task, images, labels, views[0], self.weight)


class S4L(PoolMethod):
    """``finetune.unlabeled.method=pretext``: the pretext ``tasks`` trained beside the labels on ``ratio``
    unlabeled images per labeled one (a list: candidates), their loss weighed by ``weight``."""

    description = "S4L: pretext tasks with fresh heads on the labeled and unlabeled images (weak view)"

    def __init__(
        self,
        *,
        ratio: float | list[float] = 3.0,
        weight: float = 1.0,
        tasks: list[dict] = ({"name": "rotation", "weight": 1.0},),
    ):
        super().__init__(ratio=ratio, weight=weight, tasks=list(tasks))

    @classmethod
    def complete_options(cls, options: dict) -> dict:
        """``tasks`` checked and completed as ``task.tasks`` entries are (each task's defaults filled)."""
        from ....registry import TASKS

        # multi's errors name tasks, tasks[i].name, tasks[i].<option>: this method's own option names
        tasks = TASKS["multi"].complete_options({"tasks": list(options["tasks"])})["tasks"]
        return super().complete_options({**options, "tasks": tasks})

    def check(self, encoder, pool_size, seed):
        build_pretext(self.options["tasks"], encoder, pool_size, seed)

    def objective(self, model, setting, seed, device):
        task = MultiTask(model.encoder, tasks=self.options["tasks"])  # fresh heads, the classifier's encoder
        return S4LObjective(task, model.image_size, self.options["weight"], device)

    def record(self, setting, pool_text):
        return {**super().record(setting, pool_text), "pretext": self.options["tasks"]}
