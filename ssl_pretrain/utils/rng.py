"""Seeding and capturing every RNG the run draws from (Python, NumPy, torch CPU and CUDA).

Kornia samples its augmentation parameters from torch's global generator, so restoring the torch
state restores Kornia's draws too.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device | None = None) -> dict:
    """All RNG states as plain tensors and ints (loadable with ``weights_only=True``). ``device``: the CUDA
    device the run draws on (its generator is saved; None: the current CUDA device's)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        # The run's device's generator only: a run resumed on a machine with fewer (or more) GPUs, each
        # process on its own device, gets back exactly the state it drew from.
        "cuda": [torch.cuda.get_rng_state(_cuda_index(device))] if torch.cuda.is_available() else [],
    }
    return state


def _cuda_index(device: torch.device | None) -> int | str:
    """The CUDA generator to read or set: ``device``'s when it is a CUDA device, else the current one."""
    if device is not None and device.type == "cuda" and device.index is not None:
        return device.index
    return "cuda"


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` saved; ``device``: the CUDA device the run draws on."""
    random.setstate(_as_tuple(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0], _cuda_index(device))


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
