"""Optimizers and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainerConfig


def make_optimizer(model: nn.Module, cfg: TrainerConfig, fused: bool = False) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; no weight decay on biases and normalisation parameters. ``fused``:
    PyTorch's fused kernels, whose step takes a gradient scaler's inf/NaN flag on the device (fp16)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return nesterov_sgd(groups, cfg.lr, cfg.momentum, fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, **({"fused": True} if fused else {}))


def nesterov_sgd(groups: list[dict], lr: float, momentum: float, fused: bool = False) -> torch.optim.SGD:
    """SGD with Nesterov momentum (plain SGD at ``momentum=0``). ``fused``: PyTorch's fused kernel, with every
    momentum buffer made (zeros) now. Left to make them itself, the fused kernel's first step leaves them
    unwritten when the gradient scaler skips that step (fp16 overflow; torch 2.14, CPU), and later steps read
    that memory; from zeros its first update is the unfused one's (buffer = gradient, no dampening)."""
    sgd = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0, **({"fused": True} if fused else {}))
    if fused and momentum > 0:
        for group in sgd.param_groups:
            for param in group["params"]:
                sgd.state[param]["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return sgd


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup_steps``, then cosine from 1 to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig, total_steps: int):
    warmup = min(cfg.warmup_steps, max(0, total_steps - 1))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup, total_steps, cfg.min_lr_ratio)
    )
