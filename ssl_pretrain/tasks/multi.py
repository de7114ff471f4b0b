"""Multi-task pretext training (Doersch & Zisserman 2017): several tasks share one encoder trunk.

Each sub-task keeps its own head and builds its own batch on the device from the same images; the step's
loss is the weighted sum of the sub-task losses, so one backward pass trains the shared trunk on all of
them. Inputs, targets and outputs are ``{sub-task name: tensor}``; metrics are reported per sub-task
(``rotation/loss``, ``rotation/accuracy``, ...) beside the summed ``loss``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..encoders import Encoder
from ..errors import ConfigError, OptionError, check_option
from ..options import resolve_options
from .base import PretextTask


def resolve_subtasks(tasks: list[dict], registry: dict) -> list[dict]:
    """Every entry of ``task.tasks`` checked and completed: ``{"name", "weight", **options}``, each sub-task's
    defaults filled. Errors name the entry: ``tasks[1].weight``, ``tasks[0].level``."""
    check_option(len(tasks) >= 1, "tasks", "needs at least one sub-task, e.g. [{name: rotation, weight: 1.0}]")
    resolved, seen = [], set()
    for i, entry in enumerate(tasks):
        key = f"tasks[{i}]"
        check_option(isinstance(entry, dict), key, f"must be a mapping with name and weight, got {entry!r}")
        options = dict(entry)
        name = options.pop("name", None)
        weight = options.pop("weight", 1.0)
        check_option(name != "multi", f"{key}.name", "multi cannot be nested inside multi")
        accepted = ", ".join(n for n in registry if n != "multi")
        known = isinstance(name, str) and name in registry
        check_option(known, f"{key}.name", f"unknown task {name!r}; accepted: {accepted}")
        check_option(name not in seen, f"{key}.name", f"{name} is listed twice; one head per task")
        check_option(
            isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0,
            f"{key}.weight",
            f"must be a number > 0, got {weight!r}",
        )
        try:
            options = resolve_options(registry[name], options, key)
        except ConfigError as err:
            raise OptionError(err.key, str(err).split(": ", 1)[1]) from None
        seen.add(name)
        resolved.append({"name": name, "weight": float(weight), **options})
    return resolved


def _share(sub: PretextTask, encoder: Encoder) -> PretextTask:
    """Let ``sub`` use ``encoder`` without registering it again: the trunk's weights appear once in the
    multi-task's ``state_dict`` (under ``encoder.``), not once per sub-task."""
    del sub._modules["encoder"]
    object.__setattr__(sub, "encoder", encoder)
    return sub


class MultiTask(PretextTask):
    """Weighted sum of several pretext tasks on one shared encoder.

    Args:
        tasks: sub-tasks, each ``{name: <task>, weight: <w > 0>, <that task's options>...}``; every sub-task
            trains on every image (a sub-task that selects its own images, such as Exemplar with a fixed
            ``num_seeds``, is refused: use ``num_seeds: null``).
    """

    def __init__(self, encoder: Encoder, *, tasks: list[dict] = ({"name": "rotation", "weight": 1.0},)):
        super().__init__(encoder)
        from ..registry import TASKS

        self.entries = self.complete_options({"tasks": list(tasks)})["tasks"]
        self.weights = {entry["name"]: entry["weight"] for entry in self.entries}
        self.subtasks = nn.ModuleDict()
        for i, entry in enumerate(self.entries):
            options = {k: v for k, v in entry.items() if k not in ("name", "weight")}
            try:
                sub = TASKS[entry["name"]](encoder, **options)
            except OptionError as err:
                raise OptionError(f"tasks[{i}].{err.option}", str(err).split(": ", 1)[1]) from None
            self.subtasks[entry["name"]] = _share(sub, encoder)
        self.needs_whole_batch = any(sub.needs_whole_batch for sub in self.subtasks.values())

    @classmethod
    def complete_options(cls, options: dict) -> dict:
        """The sub-tasks checked, with every sub-task's defaults filled (what ``config.yaml`` records)."""
        from ..registry import TASKS

        return {**options, "tasks": resolve_subtasks(list(options["tasks"]), TASKS)}

    def select_images(self, num_images: int, seed: int) -> torch.Tensor | None:
        for i, (name, sub) in enumerate(self.subtasks.items()):
            if sub.select_images(num_images, seed) is not None:
                raise ConfigError(
                    f"task.tasks[{i}]",
                    f"{name} trains on a subset of the images; in a multi-task run every sub-task sees every "
                    "image (for exemplar: num_seeds: null)",
                )
        return None

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor):
        """``{name: inputs}`` and ``{name: targets}``, each sub-task's own construction from ``images``."""
        inputs, targets = {}, {}
        for name, sub in self.subtasks.items():
            inputs[name], targets[name] = sub.make_batch(images, indices)
        return inputs, targets

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: sub(inputs[name]) for name, sub in self.subtasks.items()}

    def loss(self, outputs, targets):
        """``sum_k weight_k * loss_k`` and every sub-task's loss and metrics under its name."""
        total, metrics = 0.0, {}
        for name, sub in self.subtasks.items():
            loss, sub_metrics = sub.loss(outputs[name], targets[name])
            total = total + self.weights[name] * loss
            metrics[f"{name}/loss"] = loss.detach()
            metrics.update({f"{name}/{key}": value for key, value in sub_metrics.items()})
        return total, metrics

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        logged = {}
        for name, sub in self.subtasks.items():
            logged.update({f"{name}/{key}": value for key, value in sub.after_step(step, total_steps).items()})
        return logged

    def previews(self, inputs, targets, outputs):
        grids = {}
        for name, sub in self.subtasks.items():
            grids.update(sub.previews(inputs[name], targets[name], outputs[name]))
        return grids
