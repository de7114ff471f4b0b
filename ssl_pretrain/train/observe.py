"""What lets an evaluation during pretraining observe without steering: a context that puts back every module's
train/eval mode and the RNG states afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..utils.rng import rng_state, set_rng_state


@contextlib.contextmanager
def observing(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Inside: do anything with ``module`` (eval mode, loaders that draw seeds). After: its modules' modes and
    the RNG states (Python, NumPy, torch) are what they were, so training continues bit-identical."""
    modes = {child: child.training for child in module.modules()}
    saved_rng = rng_state(device)
    try:
        yield
    finally:
        for child, training in modes.items():
            child.train(training)
        set_rng_state(saved_rng, device)
