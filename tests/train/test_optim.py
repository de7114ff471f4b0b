import math

import pytest
import torch
from torch import nn

from ssl_pretrain.config import TrainerConfig
from ssl_pretrain.utils.optim import make_optimizer, make_scheduler, warmup_cosine_factor


def test_warmup_is_linear_then_cosine_to_the_floor():
    factors = [warmup_cosine_factor(s, 4, 20, 0.1) for s in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(1.0)
    middle = 4 + (20 - 4) // 2
    assert factors[middle] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert warmup_cosine_factor(20, 4, 20, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_optimizers_skip_weight_decay_on_biases_and_norms(name, cls):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    optimizer = make_optimizer(model, TrainerConfig(optimizer=name, lr=0.5, weight_decay=0.1))
    assert isinstance(optimizer, cls)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and [p.ndim for p in decay["params"]] == [4]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_scheduler_applies_the_factor_to_the_learning_rate():
    model = nn.Linear(2, 2)
    cfg = TrainerConfig(optimizer="sgd", lr=1.0, warmup_steps=2, min_lr_ratio=0.0)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:2] == [0.5, 1.0] and lrs[-1] < 0.05
