"""WebDataset-style tar shards (``data.name=shards``): large collections streamed, not listed.

A shard is a tar file whose members are grouped into samples by key (``class_0/img_12.png`` and
``class_0/img_12.cls``; the WebDataset convention, grouped by the ``webdataset`` package). Python's tarfile
reads every shard's headers once at start (:func:`survey`); loader workers then read the members at the
offsets of wids' memory-mapped index (the webdataset project's indexed reader) when it lists the same
members, or else stream the shard through webdataset's tar iterator, which parses every header again. A
sample's image is its first ``jpg``/``jpeg``/``png``/``webp``/... member; ``cls`` holds its label. Labeled
shards without ``data.test_root`` hold out the samples whose key hashes below ``data.test_fraction``
(:mod:`.holdout`, as image folders do with paths); the tar headers alone decide it, before any image is read.

Pretraining streams (:class:`~.shard_stream.ShardStream`): every epoch the shard order is shuffled by ``(seed, epoch)``,
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
import re
import struct
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import BadInput
from .decode import decode_image, device_decodable
from .holdout import KeyHoldout
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
        raise BadInput(f"data.root: shard {path} cannot be read ({_one_line(err)})") from None


def _one_line(err: Exception) -> str:
    """An error's text on one line (tarfile lists each compression it tried on a line of its own)."""
    return " ".join(str(err).split())


def _image_bytes(sample: dict) -> bytes | None:
    return next((sample[k] for k in IMAGE_KEYS if k in sample), None)


def _name(sample: dict) -> str:
    """How a skipped sample is named: its key and its shard."""
    return f"{sample['__key__']} ({sample.get('__url__', 'shard')})"


def _label(sample: dict, labels: dict[str, int] | None = None) -> int:
    """The sample's label: ``labels``' entry for its key when given (``data.labels``; -1 without one), else its
    ``cls`` member (-1 without one)."""
    if labels is not None:
        return labels.get(str(sample["__key__"]), -1)
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
        raise BadInput(f"data.root: shard {path} cannot be read ({_one_line(err)})") from None
    labeled = any("cls" in exts for exts in keys.values())
    images = [k for k, exts in keys.items() if exts & set(IMAGE_KEYS)]
    return ShardScan(images, labeled, _digest(files) if uncompressed else None)


def survey(paths: list[Path], held_out: KeyHoldout | None = None) -> tuple[list[int], list[str | None]]:
    """Per shard, the samples with an image without those held out for testing (the stream's epoch length),
    and the digest of its members."""
    counts, digests = [], []
    for path in paths:
        found = scan(path)
        counts.append(sum(1 for k in found.keys if held_out is None or not held_out(k)))
        digests.append(found.digest)
    return counts, digests


def decode_sample(sample: dict, size: int, channels: int) -> np.ndarray | None:
    """``(channels, size, size)`` uint8, or None for a member that is not a readable image."""
    data = _image_bytes(sample)
    return None if data is None else decode_image(data, size, channels)


def load_split(
    paths: list[Path],
    size: int,
    channels: int,
    description: str,
    *,
    held_out: KeyHoldout | None = None,
    keep: Callable[[str], bool] | None = None,
    labels: dict[str, int] | None = None,
) -> TensorImages:
    """The readable images of ``paths`` (less those ``held_out``; only those whose key ``keep`` accepts) decoded
    into memory, labelled by ``labels`` (by key, -1 without one) or else the samples' ``cls``. Each image's
    ``origin`` is its position among the samples not held out, so splits cut by ``keep`` from the same shards
    agree."""
    images, found, origin = [], [], []
    position = 0
    for path in paths:
        for sample in split_samples(path, None, held_out):
            key, position = str(sample["__key__"]), position + 1
            if keep is not None and not keep(key):
                continue
            array = decode_sample(sample, size, channels)
            if array is not None:
                images.append(torch.from_numpy(array.copy()))
                found.append(_label(sample, labels))
                origin.append(position - 1)
    if not images:
        raise BadInput(f"data.root: no readable image in the shards of {description}")
    return TensorImages(torch.stack(images), torch.tensor(found, dtype=torch.long), description, torch.tensor(origin))


def split_samples(path: Path, digest: str | None, held_out: KeyHoldout | None) -> Iterator[dict]:
    """The samples of one shard that its split holds, in order: those with an image, less those ``held_out``
    (for testing). Their order gives the split's positions."""
    for sample in members(path, digest):
        if _image_bytes(sample) is None:
            continue
        if held_out is not None and held_out(str(sample["__key__"])):
            continue
        yield sample


def decode_chunk(
    chunk: list[tuple[int, dict]], size: int, channels: int, encoded: bool = False, labels: dict[str, int] | None = None
) -> Batch:
    """``(position, sample)`` pairs -> one :class:`Batch`, labelled as :func:`_label` says; unreadable samples named
    in ``skipped``; with ``encoded``, JPEGs the device can decode are left encoded."""
    images, found, kept, skipped = [], [], [], []
    left, left_labels, left_kept = [], [], []
    for index, sample in chunk:
        data = _image_bytes(sample)
        if encoded and data is not None and device_decodable(data):
            left.append((_name(sample), torch.frombuffer(bytearray(data), dtype=torch.uint8)))
            left_labels.append(_label(sample, labels))
            left_kept.append(index)
            continue
        array = decode_sample(sample, size, channels)
        if array is None:
            skipped.append(_name(sample))
            continue
        images.append(torch.from_numpy(array.copy()))
        found.append(_label(sample, labels))
        kept.append(index)
    empty = torch.zeros(0, channels, size, size, dtype=torch.uint8)
    return Batch(
        torch.stack(images) if images else empty,
        torch.tensor(found + left_labels, dtype=torch.long),
        torch.tensor(kept + left_kept, dtype=torch.long),
        skipped,
        tuple(left),
    )


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
