"""The interface every pretext task implements.

A task is an ``nn.Module`` that owns the encoder and whatever head or decoder it trains. The framework
calls eight methods, four of which a task must write (``make_batch``, ``forward``, ``loss``, and ``previews``
to be seen in TensorBoard); the others have defaults: ``complete_options`` and ``probe_grid`` (the config and
the probe), ``select_images`` (the images it trains on), ``after_step`` (after each optimizer step). A new
task is one module plus one line in :data:`ssl_pretrain.registry.TASKS` (or a ``register_task`` call, or an
entry point). Its options are the keyword-only parameters of its constructor, with their defaults (and the
fields of its ``option_groups``, as the view tasks' :class:`~ssl_pretrain.tasks.parts.views.ViewOptions`); the
config validates against them. The parts tasks are built from are :mod:`ssl_pretrain.tasks.parts`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..encoders import Encoder


class PretextTask(nn.Module):
    """Base class. Shapes: images ``(B, C, H, W)`` float in ``[0, 1]`` on the training device.

    ``needs_whole_batch``: set it when ``loss`` compares the samples of a batch with each other (a
    contrastive loss); under DDP the trainer then gives ``loss`` the outputs and targets of every
    process's batch instead of this process's share. ``min_batch``: the fewest images a batch (every process's,
    with ``needs_whole_batch``) the loss is defined for; the trainer refuses a smaller one before it starts.
    """

    needs_whole_batch: bool = False
    min_batch: int = 1

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    @classmethod
    def complete_options(cls, options: dict) -> dict:
        """The task's options as the config records them (defaults already filled); a task whose options
        hold structure of their own (``multi``) checks and completes it here, raising ``OptionError``."""
        return options

    @classmethod
    def probe_grid(cls, options: dict) -> dict | None:
        """How a probe's patch grid (``probe.patch_grid=true``) should cut images for an encoder this task
        trained, from the task's options: ``{"resize", "patch", "gap", "patch_norm"}``; None: no grid of its own."""
        return None

    def select_images(self, num_images: int, seed: int) -> torch.Tensor | None:
        """Indices of the pretraining images this task trains on (None: all); called once."""
        return None

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Build ``(inputs, targets)`` from unlabeled images, on their device, with random parameters.

        ``indices``: ``(B,)`` positions of the images in the (selected) pretraining set.
        """
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss and detached metrics (``{"accuracy": ...}`` where the task has one)."""
        raise NotImplementedError

    def loss_in_fp32(self, outputs, targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`loss` with autocast off and every floating tensor of ``outputs`` and ``targets`` (tensors, or
        dicts, lists and tuples of them) in float32: what the trainer and S4L call. Under bf16 autocast a loss's
        statistics (VICReg's covariance, NT-Xent's logits at T = 0.1) would otherwise be bf16 matrix products."""
        device_type = next((t.device.type for t in _tensors(outputs)), "cpu")
        with torch.autocast(device_type, enabled=False):
            return self.loss(_float32(outputs), _float32(targets))

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Called after optimizer step ``step`` (1-based) of ``total_steps``, outside autocast and without
        gradients: where a momentum teacher moves. It must not make the host wait for the device. Returns
        numbers to log with the step's metrics (e.g. ``{"teacher_momentum": m}``)."""
        return {}

    def previews(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Image grids for TensorBoard: name -> ``(rows, cols, C, H, W)`` in ``[0, 1]``."""
        return {}


def _tensors(tree):
    """The tensors of a tensor, or of a dict, list or tuple of them, in order."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict | list | tuple):
        for item in tree.values() if isinstance(tree, dict) else tree:
            yield from _tensors(item)


def _float32(tree):
    """``tree`` with every floating tensor cast to float32 (a no-op for float32 ones)."""
    if isinstance(tree, torch.Tensor):
        return tree.float() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {key: _float32(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_float32(item) for item in tree)
    return tree
