"""Count the operations that make the host wait for the device, to keep a training step free of them.

On a GPU, reading a value (``.item()``, ``float(t)``, ``.tolist()``, ``if t:``, printing), a data-dependent
shape (``nonzero``, boolean-mask indexing, ``unique``, one-argument ``torch.where``, ``repeat_interleave``
with tensor repeats, ``bincount``, an inverse's error check) or a blocking copy between host and device
(``torch.tensor(list, device=...)``, a list used as an index, ``.to('cpu')``, ``copy_``) stalls the host
until the GPU has caught up, and the GPU then idles while the host prepares the next step. On the CPU
nothing stalls, but the same calls happen: :class:`HostSyncCounter` counts them wherever the code runs, so
a CPU test can prove a step free of them. Moves are judged by intent: a blocking ``.to(device)`` is counted
even where host and device are the same memory (a CPU run), since on a GPU it would cross; a non-blocking copy
is not, and where a copy really crosses (the ATen level on a GPU) one from pinned host memory is not either.
Calls made inside PyTorch, torchvision and Kornia are judged by what they move on the device at hand (their
``.to(device=self.device)`` on tensors drawn there moves nothing); a GPU run checks those at the ATen level.

Two levels are watched: the Python calls (a ``TorchFunctionMode``: method names, constructions from host
data, list indices) and every ATen operator that runs, however deep inside a torch function or a library
it is called (a ``TorchDispatchMode``: ``_local_scalar_dense`` behind every value read, ``nonzero``,
``_linalg_check_errors``, copies between devices, ...). A call counted at the Python level is not counted
again for the operators it runs.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {
    "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__format__", "__repr__", "__str__",
    "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "cpu", "numpy", "bincount",
}  # fmt: skip
CONSTRUCTORS = {"tensor", "as_tensor", "asarray"}
# ATen operators that read device memory on the host or size their output by the data.
ATEN_SYNCING = {
    "_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "_unique", "_unique2", "unique_dim",
    "unique_consecutive", "bincount", "_linalg_check_errors", "equal", "is_nonzero", "allclose",
}  # fmt: skip


def _is_mask(item) -> bool:
    return isinstance(item, torch.Tensor) and item.dtype == torch.bool


def _index_items(index) -> tuple:
    """The items of a Python-level index (``x[a, b]`` passes a tuple, ``x[a]`` the item itself)."""
    return index if isinstance(index, tuple) else (index,)


def _target_device(args, kwargs) -> torch.device | None:
    """The device ``Tensor.to(...)`` moves to, or None when it only changes dtype or layout."""
    candidates = [kwargs.get("device"), *args[1:2]]
    for value in candidates:
        if isinstance(value, (str, torch.device)):
            return torch.device(value)
        if isinstance(value, torch.Tensor):
            return value.device
    return None


LIBRARIES = ("torch", "torchvision", "kornia")  # their .to() calls are judged by what they move on this device


def _from_library(frame) -> bool:
    """Whether ``frame`` (the caller of a torch call) is code of PyTorch, torchvision or Kornia."""
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return module.split(".")[0] in LIBRARIES


def _python_kind(name: str, args, kwargs, by_intent: bool = True) -> str | None:
    """What a Python-level torch call does that waits for the device, or None. ``by_intent``: judge a ``.to()``
    by the move it asks for (the project's and a user's code), not by what it moves on this run's device."""
    if name in SYNCING:
        return name
    if name in CONSTRUCTORS and kwargs.get("device") is not None and args and not isinstance(args[0], torch.Tensor):
        return f"torch.{name}(host data, device=...)"
    if name in ("__getitem__", "__setitem__") and len(args) > 1:
        items = _index_items(args[1])
        if any(_is_mask(item) for item in items):
            return f"boolean mask {name}"
        if any(isinstance(item, list) for item in items):  # made a host tensor, copied to the device
            return f"list index {name}"
    if name == "where" and len(args) == 1 and not kwargs:
        return "where(condition)"
    if name == "repeat_interleave" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        if kwargs.get("output_size") is None:
            return "repeat_interleave(tensor repeats)"
    first = args[0] if args else None
    if name == "to" and isinstance(first, torch.Tensor):
        target = _target_device(args, kwargs)
        if not by_intent:
            return f"to({target.type})" if target is not None and _moves(first.device, target) else None
        return _move_request(first, target, _non_blocking(args, kwargs))
    if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor) and _moves(args[1].device, first.device):
        return "copy_ between devices"
    return None


def _non_blocking(args, kwargs) -> bool:
    """``Tensor.to``'s ``non_blocking``, given by keyword or as the positional after the device or dtype."""
    if "non_blocking" in kwargs:
        return bool(kwargs["non_blocking"])
    return any(isinstance(a, bool) and a for a in args[1:])


def _move_request(tensor: torch.Tensor, target: torch.device | None, non_blocking: bool) -> str | None:
    """What a ``tensor.to(target)`` asks for, judged by intent, not by the devices of this run: any blocking move
    with a device named is counted (``x.sum().to("cpu")`` on a CPU run is a device-to-host wait on a GPU, and
    ``torch.zeros(n).to(x.device)`` a host-to-device one). A non-blocking copy is not a wait: from the host it
    must come from pinned memory on an accelerator, which the ATen level checks where a copy really crosses."""
    if target is None or non_blocking:
        return None
    return "to(cpu): a move to host memory" if target.type == "cpu" else f"to({target.type}): a blocking move"


def _moves(source: torch.device, target: torch.device) -> bool:
    """A copy between host and a device, or between devices (not one within a device)."""
    return source.type != target.type or (target.index is not None and source.index != target.index)


def _optimizer_frame(depth: int = 2, limit: int = 40) -> bool:
    """Whether ``torch.optim`` is among the callers: optimizers read their host-side step counters there."""
    frame = sys._getframe(depth)
    marker = f"{os.sep}torch{os.sep}optim{os.sep}"
    for _ in range(limit):
        if frame is None:
            return False
        if marker in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _host_counter(tensor) -> bool:
    """A 0-dim host tensor read by ``torch.optim`` itself: an optimizer's step counter, which (when not
    ``capturable``) lives on the host on every device and is read there without waiting for the device."""
    if not (isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu" and tensor.dim() == 0):
        return False
    return _optimizer_frame(depth=3)


class _AtenSyncs(TorchDispatchMode):
    """The ATen level of :class:`HostSyncCounter`: every operator, including those inside torch functions."""

    def __init__(self, owner: HostSyncCounter):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        owner = self.owner
        if not owner.inside:
            kind = _aten_kind(func, args, kwargs)
            if kind is not None and not owner.is_ignored(args[0] if args else None):
                owner.record(f"aten {kind}")
        return func(*args, **kwargs)


def _aten_kind(func, args, kwargs) -> str | None:
    name = func._schema.name.split("::")[-1]
    if name in ATEN_SYNCING:
        return name
    if name == "repeat_interleave" and args and isinstance(args[0], torch.Tensor) and len(args) == 1:
        return None if kwargs.get("output_size") is not None else "repeat_interleave(tensor repeats)"
    if name == "_to_copy" and args and kwargs.get("device") is not None:
        return _crossing("_to_copy", args[0], torch.device(kwargs["device"]), kwargs.get("non_blocking", False))
    if name == "copy_" and len(args) > 1 and hasattr(args[1], "is_pinned"):  # a tensor (or one's stand-in)
        return _crossing("copy_", args[1], args[0].device, args[2] if len(args) > 2 else kwargs.get("non_blocking"))
    if name == "index" and len(args) > 1 and any(_is_mask(item) for item in args[1]):
        return "boolean mask index"
    return None


def _crossing(name: str, source, target: torch.device, non_blocking) -> str | None:
    """An ATen copy that really crosses between host and device: a wait unless it is non-blocking and, from the
    host, reads pinned memory (a non-blocking copy from pageable memory is staged by the host, which waits)."""
    if not _moves(source.device, target):
        return None
    if non_blocking and (source.device.type != "cpu" or source.is_pinned()):
        return None
    return f"{name} between devices" + (" from pageable memory" if non_blocking else "")


class HostSyncCounter(TorchFunctionMode):
    """``with HostSyncCounter() as counter: ...`` counts, by kind, the host-synchronising calls made inside,
    at the Python level and at the ATen level (see the module's docstring).

    Args:
        ignore: tensors that live on the host by design and are read there (an optimizer's step counters
            when not ``capturable``): calls on them are not counted.
        raise_at_first: raise :class:`HostSyncError` at the first counted call instead of counting on.
    """

    def __init__(self, ignore: Iterable[torch.Tensor] = (), raise_at_first: bool = False):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()
        self.ignored = {id(t) for t in ignore}
        self.inside = 0  # > 0 while a call judged at the Python level runs its operators
        self.raise_at_first = raise_at_first
        self._aten = _AtenSyncs(self)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def is_ignored(self, tensor) -> bool:
        return id(tensor) in self.ignored or _host_counter(tensor)

    def _by_design(self, name: str, args, kwargs) -> bool:
        """A call on a host tensor kept there by design, or ``torch.optim`` creating its host step counter."""
        if name in CONSTRUCTORS:
            return torch.device(kwargs["device"]).type == "cpu" and _optimizer_frame(depth=3)
        return bool(args) and self.is_ignored(args[0])

    def record(self, kind: str) -> None:
        self.counts[kind] += 1
        if self.raise_at_first:
            raise HostSyncError(f"a training step waits for the device: {kind}")

    def __enter__(self):
        super().__enter__()
        self._aten.__enter__()
        return self

    def __exit__(self, *exc):
        self._aten.__exit__(*exc)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        kind = _python_kind(name, args, kwargs, by_intent=name != "to" or not _from_library(sys._getframe(1)))
        if kind is None:
            return func(*args, **kwargs)
        if not self._by_design(name, args, kwargs):
            self.record(kind)
        self.inside += 1
        try:
            return func(*args, **kwargs)
        finally:
            self.inside -= 1


class HostSyncError(RuntimeError):
    """A step made a call that waits for the device (``trainer.sync_debug=error``)."""


def optimizer_step_counters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The per-parameter ``step`` tensors an optimizer keeps on the host (read there, never a device wait)."""
    return [state["step"] for state in optimizer.state.values() if isinstance(state.get("step"), torch.Tensor)]
