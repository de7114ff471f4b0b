"""A momentum teacher: an exponential moving average of some of the student's modules (Grill et al. 2020, BYOL;
Caron et al. 2021, DINO). After every optimizer step ``teacher <- m * teacher + (1 - m) * student``, with ``m``
on a cosine schedule from ``start`` at step 0 to ``end`` at the last step.

The update is one fused device operation whose weight is a Python number computed from the step counter, so it
makes the host wait for nothing. The teacher is a sub-module of its task: checkpoints keep it and resume
restores it, and under ``torchrun`` every process applies the same update to the same (all-reduced) student.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, start: float, end: float) -> float:
    """``start`` at step 0 rising along a half cosine to ``end`` at ``total_steps``."""
    progress = min(1.0, step / max(1, total_steps))
    return end - (end - start) * (1 + math.cos(math.pi * progress)) / 2


class MomentumTeacher(nn.Module):
    """Frozen copies of ``students`` (name -> module, e.g. the encoder and the projector), moved towards them by
    :meth:`update`. ``self.copies[name]`` is the teacher's module of that name; it gets no gradient."""

    def __init__(self, students: dict[str, nn.Module], start: float, end: float):
        super().__init__()
        self.start, self.end = start, end
        self.copies = nn.ModuleDict({name: copy.deepcopy(module) for name, module in students.items()})
        self.copies.requires_grad_(False)

    @torch.no_grad()
    def update(self, students: dict[str, nn.Module], step: int, total_steps: int) -> float:
        """Move every teacher parameter towards its student's after optimizer step ``step``; returns ``m``."""
        momentum = cosine_momentum(step, total_steps, self.start, self.end)
        teacher = [p for name in self.copies for p in self.copies[name].parameters()]
        student = [p.detach() for name in self.copies for p in students[name].parameters()]
        if momentum < 1:
            torch._foreach_lerp_(teacher, student, 1 - momentum)
        return momentum
