"""Streaming shards: :class:`ShardStream` (pretraining's epochs, each process's and loader worker's share of
the shards, seeded buffers, equal batches everywhere), :class:`ShardSource` (the split as the trainer, ``embed``
and ``neighbours`` read it) and :class:`ShardsInOrder`. Reading one shard is :mod:`.shards`."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import BadInput
from .holdout import KeyHoldout
from .shards import decode_chunk, split_samples, survey
from .sources import Batch


class ShardStream(IterableDataset):
    """Uint8 batches of one epoch of the shards, this process's share, split between loader workers.

    Also the trainer's batch sampler for streamed data: ``set_epoch(epoch, start_batch)``, ``len()`` (batches
    per epoch of this process), ``global_batch_size``, ``seed``, ``epoch``, ``rank``.
    """

    streaming = True

    def __init__(
        self,
        paths: list[Path],
        counts: list[int],
        batch_size: int,
        seed: int,
        size: int,
        channels: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        buffer: int = 1000,
        held_out: KeyHoldout | None = None,
        description: str = "shards",
        encoded: bool = False,
        digests: list[str | None] | None = None,
    ):
        self.paths, self.counts = paths, counts
        self.digests = digests  # of survey(): members read through wids' index (None: streamed)
        self.batch_size, self.seed, self.size, self.channels = batch_size, seed, size, channels
        self.rank, self.world_size, self.workers = rank, world_size, max(1, num_workers)
        self.buffer, self.held_out, self.description = buffer, held_out, description
        self.encoded = encoded  # JPEGs left encoded for the device (data.decode=gpu)
        # (epoch, start batch) in shared memory: loader workers outlive an epoch (persistent, forked once)
        # and read the epoch the trainer set each time an epoch's iteration starts in them.
        self._position = torch.zeros(2, dtype=torch.long).share_memory_()
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return self.workers * self._batches_per_worker(self.epoch)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def num_samples(self) -> int:
        return int(sum(self.counts))

    @property
    def epoch(self) -> int:
        return int(self._position[0])

    @property
    def start_batch(self) -> int:
        return int(self._position[1])

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self._position[0], self._position[1] = epoch, start_batch

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.paths)))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order

    def _share(self, epoch: int, rank: int, worker: int) -> list[int]:
        """Shard indices read by ``worker`` of ``rank`` in ``epoch``."""
        return self._order(epoch)[rank :: self.world_size][worker :: self.workers]

    def _batches_per_worker(self, epoch: int) -> int:
        """The fewest full batches any worker of any rank can fill this epoch (every worker yields that many)."""
        least = min(
            sum(self.counts[i] for i in self._share(epoch, r, w)) // self.batch_size
            for r in range(self.world_size)
            for w in range(self.workers)
        )
        return least

    def dropped(self, epoch: int) -> int:
        """Samples of this epoch no batch of any rank holds (what equal batch counts trim)."""
        return self.num_samples - self.world_size * self.workers * self._batches_per_worker(epoch) * self.batch_size

    def _samples(self, shards: list[int], rng: random.Random) -> Iterator[tuple[int, dict]]:
        """``(global index, sample)`` through a seeded shuffle buffer."""
        pool: list[tuple[int, dict]] = []
        for shard in shards:
            digest = self.digests[shard] if self.digests else None
            for position, sample in enumerate(split_samples(self.paths[shard], digest, self.held_out)):
                pool.append((int(self.offsets[shard]) + position, sample))
                if len(pool) >= self.buffer:
                    yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        workers = range(self.workers) if info is None and self.workers > 1 else [worker]
        streams = [self._worker_batches(w) for w in workers]
        # Without loader workers, one process walks every worker share in the order a DataLoader would.
        while streams:
            for stream in list(streams):
                batch = next(stream, None)
                if batch is None:
                    streams.remove(stream)
                else:
                    yield batch

    def _worker_batches(self, worker: int) -> Iterator[Batch]:
        """Loader workers are polled in turn from worker 0, so in an epoch global batch ``k`` is batch
        ``k // W`` of share ``k % W``. Resuming at global batch ``b``, worker ``w`` therefore plays share
        ``(b + w) % W`` from its batch ``(b + w) // W``: the same batches, in the same order, as unbroken."""
        epoch = self.epoch
        total = self._batches_per_worker(epoch)
        share, skip = (self.start_batch + worker) % self.workers, (self.start_batch + worker) // self.workers
        rng = random.Random(((self.seed * 100_003 + epoch) * 1009 + self.rank) * 101 + share)
        samples = self._samples(self._share(epoch, self.rank, share), rng)
        for made in range(total):
            chunk = [next(samples) for _ in range(self.batch_size)]
            if made < skip:
                continue  # read, not decoded
            yield decode_chunk(chunk, self.size, self.channels, self.encoded)


def stream_loader(stream: ShardStream, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader passing the stream's batches through (``num_workers`` must equal the stream's). Its
    workers start once and serve every epoch (no process start per epoch, and no fork of a process whose
    other threads (collectives, TensorBoard) may hold a lock at that moment, more than once)."""
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=torch.Generator(),
    )


class ShardSource:
    """The pretraining split of ``data.name=shards``: what to stream, built into a :class:`ShardStream` by
    the trainer once it knows the batch size, the processes and the loader workers; read in shard order
    (:meth:`in_order`) or by position (``__getitems__``) by ``embed`` and ``neighbours``."""

    streaming = True

    def __init__(
        self, paths: list[Path], size: int, channels: int, held_out: KeyHoldout | None, labeled: bool, description: str,
        labels: dict[str, int] | None = None,
    ):  # fmt: skip
        self.paths, self.size, self.channels, self.held_out, self.labeled = paths, size, channels, held_out, labeled
        self.labels = labels  # data.labels by key, read by embed and neighbours (None: the samples' cls)
        self.counts, self.digests = survey(paths, held_out)
        self.description = description
        if sum(self.counts) == 0:
            raise BadInput(f"data.root: no image in the {len(paths)} shard(s) of {description}")

    def __len__(self) -> int:
        return int(sum(self.counts))

    def stream(
        self, batch_size: int, seed: int, rank: int, world_size: int, num_workers: int, encoded: bool = False
    ) -> ShardStream:
        stream = ShardStream(
            self.paths, self.counts, batch_size, seed, self.size, self.channels,
            rank=rank, world_size=world_size, num_workers=num_workers, held_out=self.held_out,
            description=self.description, encoded=encoded, digests=self.digests,
        )  # fmt: skip
        if len(stream) == 0:
            raise BadInput(
                f"trainer.batch_size: {batch_size} images a batch, but some loader worker of some process gets "
                f"fewer from {len(self.paths)} shard(s) of {len(self)} samples; lower trainer.batch_size or "
                "data.num_workers, or write smaller shards"
            )
        return stream

    @property
    def image_size(self) -> int:
        return self.size

    def in_order(self, start: int, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
        """The split in shard order from position ``start`` (what ``embed`` reads, restartable), as ``(Batch,
        names)``: ``batch_size`` consecutive positions a batch (the last may be shorter; unreadable images named in
        ``skipped``), ``names`` the ``<shard>:<key>`` of each image kept. ``num_workers`` loader workers decode."""
        reader = ShardsInOrder(self, start, batch_size)
        return DataLoader(reader, batch_size=None, num_workers=num_workers, pin_memory=pin_memory)

    def __getitems__(self, positions: list[int]) -> Batch:
        """The images at ``positions`` (repeats allowed), in that order: only the shards holding them are read,
        only the images asked for decoded. A position whose image cannot be read is left out (named in
        ``skipped``)."""
        wanted, chunk = set(positions), []
        top = max(wanted, default=-1)
        for position, sample in self.samples_from(min(wanted, default=0), wanted):
            if position > top:
                break
            if position in wanted:
                chunk.append((position, sample))
        found = decode_chunk(chunk, self.size, self.channels, labels=self.labels)
        slot = {int(p): i for i, p in enumerate(found.indices.tolist())}
        order = torch.tensor([slot[p] for p in positions if p in slot], dtype=torch.long)
        return Batch(found.images[order], found.labels[order], found.indices[order], found.skipped)

    def samples_from(self, start: int, only: set[int] | None = None) -> Iterator[tuple[int, dict]]:
        """``(position, sample)`` from ``start`` in shard order; shards before it, or (with ``only``) holding
        none of ``only``, are not read."""
        first = 0
        for shard, (path, count) in enumerate(zip(self.paths, self.counts, strict=True)):
            last = first + count
            if last > start and (only is None or any(first <= p < last for p in only)):
                samples = split_samples(path, self.digests[shard], self.held_out)
                yield from ((p, sample) for p, sample in enumerate(samples, start=first) if p >= start)
            first = last

    def named_batch(self, chunk: list[tuple[int, dict]]) -> tuple[Batch, list[str]]:
        """``(position, sample)`` pairs decoded, with the ``<shard>:<key>`` names of the images kept."""
        batch = decode_chunk(chunk, self.size, self.channels, labels=self.labels)
        names = {p: f"{s.get('__url__', '')}:{s['__key__']}" for p, s in chunk}
        return batch, [names[int(p)] for p in batch.indices.tolist()]

    def subset(self, indices):
        raise BadInput(
            "task: this task trains on a chosen subset of the images, which streamed shards cannot give "
            "(for exemplar: task.num_seeds: null)"
        )


class ShardsInOrder(IterableDataset):
    """A :class:`ShardSource`'s split in shard order from position ``start``, as ``(Batch, names)`` of
    ``batch_size`` consecutive positions. With ``W`` loader workers, worker ``w`` decodes batches ``w, w + W, ...``
    (each reads every sample, decodes only its own) and the loader, polling its workers in turn, returns the
    batches in order."""

    def __init__(self, source: ShardSource, start: int, batch_size: int):
        self.source, self.start, self.batch_size = source, start, batch_size

    def __iter__(self) -> Iterator[tuple[Batch, list[str]]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        chunk: list[tuple[int, dict]] = []
        number = 0  # of the batch being filled
        for item in self.source.samples_from(self.start):
            chunk.append(item)
            if len(chunk) == self.batch_size:
                if number % workers == worker:
                    yield self.source.named_batch(chunk)
                chunk, number = [], number + 1
        if chunk and number % workers == worker:
            yield self.source.named_batch(chunk)
