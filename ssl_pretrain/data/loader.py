"""Batches of uint8 images in a seeded order, and their conversion to float on the device."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from ..errors import BadInput
from ..utils.images import to_grey
from .decode import decode_jpegs
from .sources import Batch
from .spec import DataInfo


class EpochBatchSampler(Sampler[list[int]]):
    """Index batches of one epoch; the order is a function of ``(seed, epoch)`` only.

    ``start_batch`` skips the first batches of the current epoch (exact resume). Incomplete
    last batches are dropped when ``drop_last`` and there is at least one full batch.

    With ``world_size`` processes (a distributed sampler): batch ``b`` of rank ``r`` is the ``r``-th
    slice of ``batch_size`` of batch ``b`` of a one-process sampler whose batch is
    ``batch_size * world_size``; every rank gets the same number of full batches.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.size = size
        self.batch_size = max(1, min(batch_size, size // world_size))
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last or world_size > 1
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.global_batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        for b in range(self.start_batch, len(self)):
            start = (b * self.world_size + self.rank) * self.batch_size
            yield order[start : start + self.batch_size].tolist()


def seeded_subset(dataset, count: int, seed: int):
    """``count`` images of ``dataset`` drawn by ``seed`` (in dataset order), or all of them if it has fewer."""
    if count >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(order[:count].sort().values)


def on_device(dataset, device: torch.device, share: float = 0.25):
    """An in-memory dataset moved, as uint8, to a CUDA ``device`` whose free memory it fits in ``share`` of:
    batches are then cut there, with no copy from the host per step. Anything else as it is."""
    if device.type != "cuda" or not getattr(dataset, "in_memory", False):
        return dataset
    free, _ = torch.cuda.mem_get_info(device)
    return dataset.to(device) if dataset.images.nbytes < share * free else dataset


def dataset_on_host(dataset) -> bool:
    """Whether batches come from host memory (and are worth pinning for the copy to a GPU)."""
    images = getattr(dataset, "images", None)
    return images is None or images.device.type == "cpu"


def loader_workers(setting: int | str, dataset, local_processes: int = 1) -> int:
    """``data.num_workers``: a number, or ``auto``: none for images already in memory (nothing to decode),
    else half the machine's cores shared by the ``local_processes`` training processes on it (torchrun's
    ``LOCAL_WORLD_SIZE``; at least 1, at most 8 each) to decode files while the main process trains."""
    if setting != "auto":
        return int(setting)
    if getattr(dataset, "in_memory", False):
        return 0
    return min(8, max(1, (os.cpu_count() or 2) // 2 // max(1, local_processes)))


def make_loader(
    dataset, sampler: EpochBatchSampler, num_workers: int | str, pin_memory: bool, local_processes: int = 1
) -> DataLoader:
    """A DataLoader that fetches whole batches through ``dataset.__getitems__``; its workers (if any) live
    as long as the loader, not one epoch."""
    workers = loader_workers(num_workers, dataset, local_processes)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=_keep_batch,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        # Its own generator: creating an iterator must not draw from the global RNG, which the
        # augmentations use (an extra draw on resume would change every later augmentation).
        generator=torch.Generator(),
    )


def pretraining_batches(
    dataset,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    num_workers: int | str,
    pin: bool,
    decode_on_device: bool = False,
    local_processes: int = 1,
):
    """``(loader, sampler)`` of the pretraining set: an :class:`EpochBatchSampler` over a map-style dataset,
    or for a streamed source (``dataset.streaming``) its own stream, which is also its batch sampler; with
    ``decode_on_device`` the stream's JPEGs arrive encoded, for :func:`decode_on_device`. ``local_processes``:
    training processes on this machine, which share its cores between their loader workers."""
    if getattr(dataset, "streaming", False):
        from .shard_stream import stream_loader

        workers = loader_workers(num_workers, dataset, local_processes)
        stream = dataset.stream(batch_size, seed, rank, world_size, workers, encoded=decode_on_device)
        return stream_loader(stream, workers, pin), stream
    sampler = EpochBatchSampler(len(dataset), batch_size, seed, rank=rank, world_size=world_size)
    return make_loader(dataset, sampler, num_workers, pin, local_processes), sampler


def seed_workers(loader: DataLoader, sampler: EpochBatchSampler) -> None:
    """Make the workers' seeds of the coming epoch a function of ``(seed, epoch, rank)`` only.

    Each worker's torch/random seed is drawn from ``loader.generator`` when an iterator starts, so a
    resumed run's workers get the seeds the uninterrupted run's workers had in that epoch. (A stream seeds
    its workers' shuffles from the same values itself.)
    """
    loader.generator.manual_seed((sampler.seed * 100_003 + sampler.epoch) * 1009 + sampler.rank)


def _keep_batch(batch: Batch) -> Batch:
    return batch


def full_batch(batch: Batch, size: int, previous: Batch | None) -> Batch:
    """``batch`` with exactly ``size`` images, for processes that must step on equal shapes (DDP).

    A batch short of images its source could not read (``skipped``) repeats its readable ones in order; one
    with none repeats ``previous`` (this process's last full batch), or is black images (labels -1) when
    there is none yet. ``skipped`` is kept, so the unreadable files are still reported.
    """
    count = len(batch.images)
    if count == size:
        return batch
    source = batch if count else previous
    if source is None:
        images = batch.images.new_zeros((size, *batch.images.shape[1:]))
        labels = torch.full((size,), -1, dtype=torch.long)
        return Batch(images, labels, torch.arange(size), batch.skipped)
    count = len(source.images)
    take = torch.arange(size) % count
    take_there = torch.arange(size, device=source.images.device) % count  # built where the images are
    return Batch(source.images[take_there], source.labels[take], source.indices[take], batch.skipped)


def to_device_float(images: torch.Tensor, info: DataInfo, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, C0, H0, W0)`` -> float ``(B, C, S, S)`` in ``[0, 1]`` on ``device``.

    Converts grey<->RGB and resizes (bilinear, antialiased) to the configured size, batched.
    """
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if x.shape[1] != info.channels:
        if info.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            x = to_grey(x)
    if x.shape[-1] != info.image_size or x.shape[-2] != info.image_size:
        x = F.interpolate(
            x, size=(info.image_size, info.image_size), mode="bilinear", antialias=True, align_corners=False
        ).clamp_(0, 1)
    return x.contiguous()


def decodes_on_device(setting: str, device: torch.device, dataset) -> bool:
    """``data.decode``: whether the pretraining JPEGs are decoded on the training device (``gpu``; ``auto``
    on CUDA for streamed shards) rather than in the loader workers (``cpu``)."""
    streaming = getattr(dataset, "streaming", False)
    if setting == "gpu":
        if device.type != "cuda":
            raise BadInput(f"data.decode: gpu decodes on a CUDA device; this run's device is {device}")
        if not streaming:
            raise BadInput("data.decode: gpu applies to data.name=shards (image folders decode in loader workers)")
    return streaming and (setting == "gpu" or (setting == "auto" and device.type == "cuda"))


def decode_on_device(batch: Batch, device: torch.device) -> Batch:
    """A batch whose ``encoded`` JPEGs are decoded on ``device`` (batched) and appended to its images, which
    move there too; members that fail to decode join ``skipped``. A batch without encoded members is
    returned as it is."""
    if not batch.encoded:
        return batch
    size, channels = batch.images.shape[-1], batch.images.shape[1]
    names, data = zip(*batch.encoded, strict=True)
    decoded = decode_jpegs(list(data), size, channels, device)
    ok = [i for i, image in enumerate(decoded) if image is not None]
    first = len(batch.images)
    keep = torch.tensor([*range(first), *(first + i for i in ok)], dtype=torch.long)
    images = torch.cat([batch.images.to(device, non_blocking=True), *(decoded[i][None] for i in ok)])
    skipped = [*batch.skipped, *(names[i] for i in range(len(decoded)) if decoded[i] is None)]
    return Batch(images, batch.labels[keep], batch.indices[keep], skipped)
