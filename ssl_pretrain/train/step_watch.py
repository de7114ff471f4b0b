"""What the training step keeps on the device between logging steps: its timing and the non-finite check,
and the check that it keeps everything there (``trainer.sync_debug``).

Reading a CUDA tensor or timing with ``torch.cuda.synchronize`` makes the host wait for the GPU; done every
step, it leaves the GPU idle while the host prepares the next one. These keep the values on the device
(CUDA events for time, a running flag for non-finite losses) and read them at logging steps only.
"""

from __future__ import annotations

import contextlib
import time

import torch

from ..utils.host_syncs import HostSyncCounter, HostSyncError, optimizer_step_counters
from . import distributed
from .distributed import World


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class SyncCheck:
    """``trainer.sync_debug``: watch every training step for calls that make the host wait for the device.

    ``off``: nothing. ``count``: :class:`~ssl_pretrain.utils.host_syncs.HostSyncCounter` around each step
    (Python and ATen level, on any device; it slows the step), counts by kind in ``metrics.json``. ``error``:
    stop at the first one, naming it: on CUDA through PyTorch's sync debug mode (nearly free), for every step
    after this process's first (which allocates memory, tunes cuDNN and creates the optimizer's state); on
    other devices through the counter, every step.
    """

    def __init__(self, mode: str, device: torch.device):
        self.mode = mode
        self.cuda_debug = mode == "error" and device.type == "cuda"
        self.counter = None if mode == "off" or self.cuda_debug else HostSyncCounter(raise_at_first=mode == "error")
        self.checked = 0
        self.first_done = False

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.counter.counts) if self.counter is not None else {}

    @contextlib.contextmanager
    def step(self, optimizer: torch.optim.Optimizer, step: int):
        """Around one training step (``step``: its number, for the error message)."""
        if self.mode == "off":
            yield
            return
        if self.cuda_debug and not self.first_done:  # allocations, cuDNN tuning, optimizer state: not checked
            self.first_done = True
            yield
            return
        try:
            with self._watching(optimizer):
                yield
        except HostSyncError as err:
            raise StepSyncError(f"trainer.sync_debug=error: step {step}: {err}") from None
        except RuntimeError as err:
            if "synchronizing CUDA operation" not in str(err):
                raise
            raise StepSyncError(f"trainer.sync_debug=error: step {step} waits for the GPU: {err}") from None
        self.checked += 1

    @contextlib.contextmanager
    def _watching(self, optimizer):
        if self.cuda_debug:
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode(previous)
            return
        self.counter.ignored |= {id(t) for t in optimizer_step_counters(optimizer)}
        with self.counter:
            yield


class StepSyncError(TrainingError):
    """A training step waited for the device under ``trainer.sync_debug=error``."""


class StepTimer:
    """Seconds spent in training steps: CUDA events read at :meth:`collect` on CUDA, wall time on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list[tuple] = []
        self.seconds = 0.0

    def start(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, started, wait: bool = False) -> float:
        """Close a step; returns its seconds now only when ``wait`` (else 0: they come with :meth:`collect`)."""
        if not self.cuda:
            elapsed = time.perf_counter() - started
            if not wait:
                self.seconds += elapsed
            return elapsed
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        if wait:
            end.synchronize()
            return started.elapsed_time(end) / 1000
        self.pending.append((started, end))
        return 0.0

    def collect(self) -> float:
        """Seconds of the steps closed since the last call (waits for their CUDA events)."""
        if self.pending:
            self.pending[-1][1].synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.pending) / 1000
            self.pending = []
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class NonFiniteWatch:
    """The first step whose loss was not finite, and that loss, kept on the device until asked."""

    def __init__(self, device: torch.device):
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach()) & (self.step < 0)
        self.step = torch.where(bad, torch.full_like(self.step, step), self.step)
        self.value = torch.where(bad, loss.detach().float(), self.value)

    def first_bad(self, world: World) -> tuple[int, str] | None:
        """``(step, value)`` of the first non-finite loss on this process, or any process's when another had
        one (``value`` then says so); None when every loss was finite."""
        step = int(self.step)
        anywhere = distributed.sum_across([float(step >= 0)], world)[0]
        if step >= 0:
            return step, f"{float(self.value)}"
        if anywhere:
            return -1, "non-finite on another process"
        return None
