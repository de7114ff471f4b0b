"""Embed every image of a dataset with a frozen encoder, streamed in batches into a memory-mapped file: memory
stays flat whatever the collection's size. Unreadable files are skipped and listed, never fatal."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ...data import Batch, DataInfo, make_loader, to_device_float
from ...data.loader import loader_workers
from ...encoders import Encoder
from ...utils.precision import Precision
from ...utils.progress import progress_bar
from ..features.feature_view import FeatureView
from .store import EmbeddingWriter, IndexRow, claim_folder, write_record


@dataclass
class EmbedSummary:
    """What ``embed`` wrote: the folder, rows and width, unreadable files, time and rate of this call."""

    folder: str
    rows: int
    dim: int
    skipped: int
    seconds: float
    images_per_s: float
    normalized: bool
    resumed_from: int
    projector: str | None = None
    source: str = ""  # what was embedded, e.g. "image folder /data, without the held-out test files (...)"


def describe_position(dataset, position: int) -> IndexRow:
    """The index row of a dataset position: its file (image folders) and its label (class name or number)."""
    files = getattr(dataset, "files", None)
    path = str(files[position]) if files is not None else ""
    return IndexRow(position, path, label_text(int(dataset.labels[position]), getattr(dataset, "classes", None)))


def label_text(label: int, classes: list[str] | None) -> str:
    """A label as the index writes it: its class name, else its number; empty when unknown (-1)."""
    classes = classes or []
    return "" if label < 0 else (classes[label] if label < len(classes) else str(label))


class PositionBatches:
    """Batches of consecutive dataset positions ``start, start + 1, ...`` up to ``size``, ``batch`` a batch (the
    last may be shorter): a batch sampler that resumes at any position, whatever the batch size."""

    def __init__(self, start: int, size: int, batch: int):
        self.start, self.size, self.batch = start, size, batch

    def __iter__(self) -> Iterator[list[int]]:
        for first in range(self.start, self.size, self.batch):
            yield list(range(first, min(self.size, first + self.batch)))

    def __len__(self) -> int:
        return -(-max(0, self.size - self.start) // self.batch)


def collection_batches(dataset, start: int, batch: int, num_workers, pin_memory: bool) -> Iterator[tuple[Batch, list]]:
    """``dataset``'s images in position order from position ``start``: ``(Batch, index rows of its images)``.
    Streamed shards are read in shard order (decoded by ``num_workers`` loader workers), each image named
    ``<shard>:<key>``."""
    if getattr(dataset, "streaming", False):
        for found, names in dataset.in_order(start, batch, loader_workers(num_workers, dataset), pin_memory):
            positions, labels = found.indices.tolist(), found.labels.tolist()
            yield found, [IndexRow(p, n, label_text(y, None)) for p, n, y in zip(positions, names, labels, strict=True)]
        return
    for found in make_loader(dataset, PositionBatches(start, len(dataset), batch), num_workers, pin_memory):
        yield found, [describe_position(dataset, int(p)) for p in found.indices]


def embed_collection(
    encoder: Encoder,
    dataset,
    info: DataInfo,
    device: torch.device,
    folder: Path,
    *,
    settings: dict,
    batch: int,
    chunk: int,
    force: bool = False,
    progress: bool = True,
    precision: Precision | None = None,
    num_workers: int | str = 0,
) -> EmbedSummary:
    """Write ``folder`` (see :mod:`.store`): ``dataset``'s images, converted to ``info``'s size and channels,
    through ``encoder``'s global average pooling, ``(N, D)`` float32, L2-normalised when
    ``settings["normalize"]``. About every ``chunk`` images the progress is recorded, so a call on an unfinished
    folder with the same ``settings`` continues it at the next position, whatever ``batch`` it uses."""
    resume = claim_folder(folder, settings, force)
    start = resume["positions_done"] if resume else 0
    writer = EmbeddingWriter(folder, len(dataset), encoder.num_features, resume)
    view = FeatureView(encoder.to(device).eval())
    batches = collection_batches(dataset, start, batch, num_workers, pin_memory=device.type == "cuda")
    per_chunk = max(1, chunk // batch)
    bar = progress_bar(len(dataset), "embed", progress, initial=start, unit="images")
    began, done, skipped = time.perf_counter(), start, resume.get("skipped", 0) if resume else 0
    record = {"settings": settings, "complete": False, "positions_done": start, "rows_done": writer.rows}
    try:
        for i, (batch_data, rows) in enumerate(batches):
            vectors = embed_images(view, batch_data.images, info, device, precision, settings["normalize"])
            writer.append(vectors, rows, batch_data.skipped)
            done += len(batch_data.indices) + len(batch_data.skipped)
            skipped += len(batch_data.skipped)
            bar.update(len(batch_data.indices) + len(batch_data.skipped))
            if (i + 1) % per_chunk == 0 or done >= len(dataset):
                writer.flush()
                record.update(positions_done=done, rows_done=writer.rows, skipped=skipped)
                write_record(folder, record)
    finally:
        bar.close()
    writer.finish(chunk)
    seconds = time.perf_counter() - began
    source = getattr(dataset, "description", type(dataset).__name__)
    record.update(complete=True, rows=writer.rows, dim=encoder.num_features, seconds=round(seconds, 2), source=source)
    write_record(folder, record)
    rate = (done - start) / max(1e-9, seconds)
    return EmbedSummary(
        str(folder), writer.rows, encoder.num_features, skipped, seconds, rate, settings["normalize"], start,
        source=source,
    )  # fmt: skip


@torch.no_grad()
def embed_images(view, images, info, device, precision, normalize: bool):
    """``(B, C, H, W)`` uint8 -> ``(B, D)`` float32 NumPy (rows L2-normalised when ``normalize``)."""
    if len(images) == 0:
        return torch.zeros(0, view.encoder.num_features).numpy()
    x = to_device_float(images, info, device)
    with precision.autocast() if precision is not None else contextlib.nullcontext():
        features = view.forward_features(x)
    features = features.float()
    if normalize:
        features = F.normalize(features, dim=1)
    return features.cpu().numpy()
