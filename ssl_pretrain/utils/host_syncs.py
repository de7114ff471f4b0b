"""Count the operations that make the host wait for the device, to keep a training step free of them.

On a GPU, reading a value (``.item()``, ``float(t)``, ``.tolist()``, ``if t:``), a data-dependent shape
(``nonzero``, boolean-mask indexing, ``unique``) or a copy to the host (``.cpu()``, ``.numpy()``) stalls the
host until the GPU has caught up, and the GPU then idles while the host prepares the next step. On the CPU
nothing stalls, but the same calls happen: :class:`HostSyncCounter` counts them wherever the code runs, so a
CPU test can prove a step free of them.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterable

import torch
from torch.overrides import TorchFunctionMode

SYNCING = {
    "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__format__", "nonzero", "argwhere",
    "masked_select", "unique", "cpu", "numpy",
}  # fmt: skip


def _bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class HostSyncCounter(TorchFunctionMode):
    """``with HostSyncCounter() as counter: ...`` counts, by name, the host-synchronising calls made inside.

    Args:
        ignore: tensors that live on the host by design and are read there (an optimizer's step counters
            when not ``capturable``): calls on them are not counted.
    """

    def __init__(self, ignore: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()
        self.ignored = {id(t) for t in ignore}
        self.active = True

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.active and args and id(args[0]) not in self.ignored and not _optimizer_host_counter(args[0]):
            name = getattr(func, "__name__", "")
            if name in SYNCING:
                self.counts[name] += 1
            elif name in ("__getitem__", "__setitem__") and len(args) > 1 and _bool_index(args[1]):
                self.counts[f"boolean mask {name}"] += 1
        return func(*args, **(kwargs or {}))


def _optimizer_host_counter(tensor) -> bool:
    """A 0-dim host tensor read by ``torch.optim`` itself: an optimizer's step counter, which (when not
    ``capturable``) lives on the host on every device and is read there without waiting for the device."""
    if not (isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu" and tensor.dim() == 0):
        return False
    caller = sys._getframe(2).f_code.co_filename  # 0: here, 1: __torch_function__, 2: the code calling torch
    return f"{os.sep}torch{os.sep}optim{os.sep}" in caller


def optimizer_step_counters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The per-parameter ``step`` tensors an optimizer keeps on the host (read there, never a device wait)."""
    return [state["step"] for state in optimizer.state.values() if isinstance(state.get("step"), torch.Tensor)]
