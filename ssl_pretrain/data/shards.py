"""WebDataset-style tar shards (``data.name=shards``): large collections streamed, not listed.

A shard is a tar file whose members are grouped into samples by key (``class_0/img_12.png`` and
``class_0/img_12.cls``; the WebDataset convention, grouped by the ``webdataset`` package). Python's tarfile
reads every shard's headers once at start (:func:`survey`); loader workers then read the members at the
offsets of wids' memory-mapped index (the webdataset project's indexed reader) when it lists the same
members, or else stream the shard through webdataset's tar iterator, which parses every header again. A
sample's image is its first ``jpg``/``jpeg``/``png``/``webp``/... member; ``cls`` holds its label. Labeled
shards without ``data.test_root`` hold out the samples whose key hashes below ``data.test_fraction``
(:mod:`.holdout`, as image folders do with paths); the tar headers alone decide it, before any image is read.

Pretraining streams (:class:`ShardStream`): every epoch the shard order is shuffled by ``(seed, epoch)``,
rank ``r`` of ``R`` takes every ``R``-th shard and loader worker ``w`` of ``W`` every ``W``-th of those, so no
sample is read twice in an epoch; each worker shuffles through a seeded buffer, decodes, and yields whole
uint8 batches. Every worker yields the same number of batches (the fewest any worker of any rank can fill),
so every rank takes the same number of steps and a resumed run skips exactly the batches already trained
on (read, not decoded). What that trims (a worker's last incomplete batch, and what a worker with more
samples than the others has left over) is reported as ``dropped`` per epoch. Evaluation splits (labeled)
are decoded into memory as :class:`~.sources.TensorImages`.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import struct
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import BadInput
from .decode import decode_image, device_decodable
from .holdout import hash_position
from .sources import IMAGE_SUFFIXES, Batch, TensorImages

IMAGE_KEYS = tuple(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))


def webdataset():
    """The ``webdataset`` package, or a one-line error saying how to install it."""
    try:
        import webdataset
    except ImportError:
        raise BadInput("data.name: shards need the webdataset package: pip install 'ssl_pretrain[shards]'") from None
    return webdataset


def shard_paths(root: str | list[str] | None, key: str = "data.root") -> list[Path]:
    """The shard files of ``root``: a brace pattern (``train-{000000..000099}.tar``), a list of paths or
    patterns, or a folder holding ``.tar`` files; each must exist."""
    webdataset()
    from braceexpand import braceexpand  # installed with webdataset

    if root is None:
        raise BadInput(f"{key}: shards need {key}, e.g. /data/train-{{000000..000099}}.tar or a folder of .tar")
    patterns = root if isinstance(root, list) else [root]
    paths: list[Path] = []
    for pattern in patterns:
        folder = Path(str(pattern)).expanduser()
        if folder.is_dir():
            found = sorted(folder.glob("*.tar"))
            if not found:
                raise BadInput(f"{key}: no .tar shards in the folder {folder}")
            paths += found
            continue
        paths += [Path(p).expanduser() for p in braceexpand(str(pattern))]
    for path in paths:
        if not path.is_file():
            raise BadInput(f"{key}: shard {path} does not exist")
    return paths


def _indexed_reader():
    """wids' memory-mapped tar index (the webdataset project's random-access reader), or None without it."""
    try:
        from wids.wids_mmtar import MMIndexedTar
    except ImportError:
        return None
    return MMIndexedTar


SKIPPED_META = re.compile(r"__[^/]*__($|/)")  # the names webdataset's tar iterator skips by default


def _kept(name: str, prefix: str, suffix: str) -> bool:
    """Whether webdataset's tar iterator passes member ``name`` on (it drops ``__meta__`` names; ``prefix``
    and ``suffix`` are its ``meta_prefix`` and ``meta_suffix``)."""
    if "/" not in name and name.startswith(prefix) and name.endswith(suffix):
        return False
    return SKIPPED_META.match(name) is None


def _index(path: Path, digest: str):
    """wids' index of the memory-mapped shard (``MMIndexedTar``), or None when wids is not installed or its
    index differs from the members tarfile listed (``digest`` of :func:`scan`; pax or GNU long-name headers,
    which the index does not read, make it differ)."""
    reader = _indexed_reader()
    if reader is None:
        return None
    try:
        index = reader(str(path), verbose=False)
    except (OSError, ValueError, struct.error):
        return None
    if _digest((name, offset + 512, size) for name, offset, size in index.by_index) != digest:
        index.close()
        return None
    return index


def _files(path: Path, digest: str | None) -> Iterator[dict]:
    """``{"fname", "data"}`` per regular member: read at the offsets of wids' index when ``digest`` is given
    and the index agrees with it, else streamed by webdataset's tar iterator (headers parsed as it reads)."""
    tariterators = webdataset().tariterators
    index = None if digest is None else _index(path, digest)
    if index is None:
        with open(path, "rb") as stream:
            yield from tariterators.tar_file_iterator(stream)
        return
    prefix, suffix = tariterators.meta_prefix, tariterators.meta_suffix
    try:
        for name, data in index:
            if _kept(name, prefix, suffix):
                yield {"fname": name, "data": bytes(data)}
    finally:
        index.close()


def members(path: Path, digest: str | None = None) -> Iterator[dict]:
    """The samples of one shard, ``{"__key__": ..., "<ext>": bytes}``; an unreadable shard is named.

    With the shard's ``digest`` from :func:`scan`, members are read through wids' index of the memory-mapped
    file (no tar header parsed again: ~10 us a sample instead of ~80); otherwise streamed by webdataset."""
    try:
        files = ({**entry, "__url__": str(path)} for entry in _files(path, digest))
        yield from webdataset().tariterators.group_by_keys(files)
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise BadInput(f"data.root: shard {path} cannot be read ({err})") from None


def _image_bytes(sample: dict) -> bytes | None:
    return next((sample[k] for k in IMAGE_KEYS if k in sample), None)


def _name(sample: dict) -> str:
    """How a skipped sample is named: its key and its shard."""
    return f"{sample['__key__']} ({sample.get('__url__', 'shard')})"


def _label(sample: dict) -> int:
    value = sample.get("cls")
    if value is None:
        return -1
    try:
        return int(value.decode("utf-8").strip() if isinstance(value, bytes) else value)
    except ValueError:
        return -1


def _digest(files: Iterable[tuple[str, int, int]]) -> str:
    """A fingerprint of a shard's regular members: ``(name, data offset, size)`` each, in order."""
    digest = hashlib.blake2b(digest_size=16)
    for name, offset, size in files:
        digest.update(f"{name}\0{offset}\0{size}\n".encode())
    return digest.hexdigest()


class ShardScan(NamedTuple):
    """What the tar headers of one shard say: the keys of its samples with an image (in order), whether any
    sample has a label, and the :func:`_digest` of its regular members (None for a compressed shard, whose
    members are not at offsets of the file)."""

    keys: list[str]
    labeled: bool
    digest: str | None


def scan(path: Path) -> ShardScan:
    """The headers of ``path`` read by tarfile (no image is read)."""
    base_plus_ext = webdataset().tariterators.base_plus_ext
    keys: dict[str, set[str]] = {}
    files = []
    try:
        with tarfile.open(path, mode="r:*") as tar:
            uncompressed = isinstance(tar.fileobj, io.BufferedReader)
            for member in tar:
                if member.isfile():
                    files.append((member.name, member.offset_data, member.size))
                    key, ext = base_plus_ext(member.name)
                    if key is not None:
                        keys.setdefault(key, set()).add(ext.lower())
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BadInput(f"data.root: shard {path} cannot be read ({err})") from None
    labeled = any("cls" in exts for exts in keys.values())
    images = [k for k, exts in keys.items() if exts & set(IMAGE_KEYS)]
    return ShardScan(images, labeled, _digest(files) if uncompressed else None)


def survey(paths: list[Path], held_out: float | None = None) -> tuple[list[int], list[str | None]]:
    """Per shard, the samples with an image without those held out for testing (the stream's epoch length),
    and the digest of its members."""
    counts, digests = [], []
    for path in paths:
        found = scan(path)
        counts.append(sum(1 for k in found.keys if held_out is None or hash_position(k) >= held_out))
        digests.append(found.digest)
    return counts, digests


def decode_sample(sample: dict, size: int, channels: int) -> np.ndarray | None:
    """``(channels, size, size)`` uint8, or None for a member that is not a readable image."""
    data = _image_bytes(sample)
    return None if data is None else decode_image(data, size, channels)


def load_split(paths: list[Path], size: int, channels: int, description: str, keep=None) -> TensorImages:
    """Every readable image of ``paths`` (whose key ``keep(key)`` accepts) decoded into memory, with labels."""
    images, labels = [], []
    for path in paths:
        for sample in members(path):
            if keep is not None and not keep(str(sample["__key__"])):
                continue
            array = decode_sample(sample, size, channels)
            if array is not None:
                images.append(torch.from_numpy(array.copy()))
                labels.append(_label(sample))
    if not images:
        raise BadInput(f"data.root: no readable image in the shards of {description}")
    return TensorImages(torch.stack(images), torch.tensor(labels, dtype=torch.long), description)


def split_samples(path: Path, digest: str | None, held_out: float | None) -> Iterator[dict]:
    """The samples of one shard that its split holds, in order: those with an image, less those whose key
    hashes below ``held_out`` (held out for testing). Their order gives the split's positions."""
    for sample in members(path, digest):
        if _image_bytes(sample) is None:
            continue
        if held_out is not None and hash_position(str(sample["__key__"])) < held_out:
            continue
        yield sample


def decode_chunk(chunk: list[tuple[int, dict]], size: int, channels: int, encoded: bool = False) -> Batch:
    """``(position, sample)`` pairs -> one :class:`Batch`; unreadable samples named in ``skipped``; with
    ``encoded``, JPEGs the device can decode are left encoded."""
    images, labels, kept, skipped = [], [], [], []
    left, left_labels, left_kept = [], [], []
    for index, sample in chunk:
        data = _image_bytes(sample)
        if encoded and data is not None and device_decodable(data):
            left.append((_name(sample), torch.frombuffer(bytearray(data), dtype=torch.uint8)))
            left_labels.append(_label(sample))
            left_kept.append(index)
            continue
        array = decode_sample(sample, size, channels)
        if array is None:
            skipped.append(_name(sample))
            continue
        images.append(torch.from_numpy(array.copy()))
        labels.append(_label(sample))
        kept.append(index)
    empty = torch.zeros(0, channels, size, size, dtype=torch.uint8)
    return Batch(
        torch.stack(images) if images else empty,
        torch.tensor(labels + left_labels, dtype=torch.long),
        torch.tensor(kept + left_kept, dtype=torch.long),
        skipped,
        tuple(left),
    )


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
        held_out: float | None = None,
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
        self, paths: list[Path], size: int, channels: int, held_out: float | None, labeled: bool, description: str
    ):
        self.paths, self.size, self.channels, self.held_out, self.labeled = paths, size, channels, held_out, labeled
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
        found = decode_chunk(chunk, self.size, self.channels)
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
        batch = decode_chunk(chunk, self.size, self.channels)
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


def write_shards(src: Path, pattern: str, per_shard: int) -> tuple[list[Path], list[str]]:
    """Write every image below ``src`` into tar shards named by ``pattern`` (printf style,
    ``out/train-%06d.tar``), ``per_shard`` samples each; first-level sub-folders become ``cls`` labels (their
    index in sorted order). The image bytes are copied as they are. Returns the shards and the classes."""
    from .sources import scan_folder

    ShardWriter = webdataset().ShardWriter  # noqa: N806 - the package's class

    if "%" not in pattern:
        raise BadInput(f"OUT_PATTERN: {pattern} needs a shard number field, e.g. out/train-%06d.tar")
    if per_shard < 1:
        raise BadInput(f"--per-shard: must be >= 1, got {per_shard}")
    files, labels, classes = scan_folder(src)
    if not files:
        raise BadInput(f"SRC_FOLDER: no image files in {src}")
    Path(pattern % 0).parent.mkdir(parents=True, exist_ok=True)
    # An integer mtime: plain ustar headers (a float one adds a pax header per member, doubling the tar
    # parsing when reading) and the same bytes for the same images.
    with ShardWriter(pattern, maxcount=per_shard, verbose=0, encoder=False, mtime=0) as writer:
        for path, label in zip(files, labels, strict=True):
            relative = path.relative_to(src)
            key = (relative.parent / relative.stem.replace(".", "_")).as_posix()
            sample = {"__key__": key, relative.suffix.lower().lstrip("."): path.read_bytes()}
            if label >= 0:
                sample["cls"] = str(label).encode()
            writer.write(sample)
        written = writer.shard
    return [Path(pattern % i) for i in range(written)], classes
