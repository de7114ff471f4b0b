"""Data-parallel training across processes started by ``torchrun`` (DDP; NCCL on CUDA, gloo on CPU).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) for each
process; without them a run is one process and everything here is a no-op. Conventions:

- ``trainer.batch_size`` is per process: a step sees ``batch_size * world_size`` images.
- Rank ``r`` of a step's global batch takes images ``[r * batch_size, (r + 1) * batch_size)`` of the
  batch a single process with the global batch size would take, so N processes with ``batch_size = B``
  follow the same data order as one process with ``batch_size = N * B``.
- Augmentation draws differ per rank (:func:`rank_seed`); rank 0 draws exactly what a one-process
  run of the same seed draws.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import BadInput, ConfigError


@dataclass(frozen=True)
class World:
    """Where this process sits among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # where collectives' tensors live (the GPU under NCCL)
    local_size: int = 1  # processes on this machine
    owns_group: bool = False  # this run joined the process group (and leaves it); else a caller set it up
    launched: bool = False  # started by torchrun (which sets WORLD_SIZE), whatever the number of processes

    @property
    def distributed(self) -> bool:
        """Data-parallel: more than one process, or any torchrun launch (one process then forms a group of
        one, so ``torchrun --nproc_per_node=1`` takes the DDP and NCCL path a multi-GPU run takes)."""
        return self.size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """The process's place as set by ``torchrun`` (one process when the variables are absent)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    except ValueError as err:
        raise BadInput(
            f"WORLD_SIZE/RANK/LOCAL_RANK/LOCAL_WORLD_SIZE must be integers as set by torchrun ({err})"
        ) from None
    return World(rank, size, local_rank, local_size=local_size, launched="WORLD_SIZE" in os.environ)


def start(world: World, device: torch.device, timeout_seconds: float = 600.0) -> World:
    """Join the process group (NCCL for CUDA devices, gloo for CPU); returns ``world`` on ``device``. A
    collective that waits longer than ``timeout_seconds`` (a failed or stuck process) fails on every process
    instead of hanging until the backend's default. A group the caller already set up is used as it is (and
    left to the caller by :func:`stop`)."""
    world = dataclasses.replace(world, device=device)
    if not world.distributed or dist.is_initialized():
        return world
    world = dataclasses.replace(world, owns_group=True)
    timeout = datetime.timedelta(seconds=timeout_seconds)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return world


def stop(world: World) -> None:
    """Leave the process group :func:`start` joined (not one the caller set up)."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """Under torchrun each process on a node takes GPU ``LOCAL_RANK`` (``cuda`` without an index); a fixed
    ``cuda:N`` would put every process on one GPU, where NCCL fails, so it is refused (one process may name
    its GPU)."""
    if device.type == "cuda" and world.distributed and not (world.size == 1 and device.index is not None):
        if device.index is not None:
            raise ConfigError(
                "device",
                f"{device} under torchrun would put all {world.size} processes on one GPU; use device=cuda "
                "(process LOCAL_RANK takes GPU LOCAL_RANK) and CUDA_VISIBLE_DEVICES to choose the GPUs",
            )
        return torch.device("cuda", world.local_rank)
    return device


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s augmentation draws: ``seed`` itself on rank 0, distinct elsewhere."""
    return seed if rank == 0 else (seed * 1_000_003 + rank * 7919) % 2**63


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def sum_across(values: list[float], world: World) -> list[float]:
    """Element-wise sum over ranks of a few numbers (returned unchanged for one process)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def mean_across(metrics: dict[str, float], world: World) -> dict[str, float]:
    """Average of each metric over ranks (for logging)."""
    keys = sorted(metrics)
    totals = sum_across([metrics[k] for k in keys], world)
    return {k: v / world.size for k, v in zip(keys, totals, strict=True)}


def gather_objects(obj, world: World) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` for one process)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def gather_with_local_grad(x: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate ``x`` ``(n, ...)`` of every rank in rank order; only the local part keeps its gradient.

    Every rank holds the same shape (the trainer steps on full batches everywhere), so nothing is exchanged
    or read on the host first. Each rank then computes the loss of the whole global batch; scaling that loss
    by ``world.size`` before ``backward`` gives, after DDP averages the gradients, exactly the gradient of the
    global loss.
    """
    if not world.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[world.rank] = x
    return torch.cat(parts)


def gather_tree(x, world: World):
    """:func:`gather_with_local_grad` on a tensor, or on each tensor of a mapping (multi-task outputs)."""
    if isinstance(x, dict):
        return {key: gather_tree(value, world) for key, value in x.items()}
    return gather_with_local_grad(x, world)


def broadcast_buffers(module: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts them from rank 0 before each forward pass, so rank 0's are the run's; after the
    last step each rank holds its own until this call.
    """
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)
