"""The ``embed`` and ``neighbours`` commands: their config read, then ``embed`` from the values it uses (where
the encoder and the images are, where the output goes, the options); ``neighbours``' work is :mod:`.find`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ...config import Config, DataConfig
from ...data import DataInfo, data_info, open_split
from ...errors import BadInput
from ...utils.files import weights_digest
from ...utils.precision import Precision, resolve_precision
from ..shared.encoder_source import load_encoder, run_dir_of
from .embed import EmbedSummary, embed_collection
from .find import DuplicateOptions, NeighboursSummary, find_neighbours
from .neighbours import source_name
from .projector import projector_rows, write_projector
from .store import PROJECTOR, open_embeddings


def default_output(source: Path, data: DataConfig, split: str, given: str | None) -> Path:
    """``embed.output``, or ``<run>/embeddings/<data>-<split>`` for an encoder inside a run directory."""
    if given:
        return Path(given).expanduser()
    run = run_dir_of(source)
    if run is None:
        raise BadInput(f"embed.output: {source} is not inside a run directory; say where the embeddings go")
    return run / "embeddings" / f"{data.name}-{split}"


def embed_source(
    source: Path, data: DataConfig, split: str, output: Path, *, normalize: bool, projector_images: int,
    chunk: int, batch: int, device: torch.device, precision: Precision | None, seed: int, force: bool,
    progress: bool,
) -> EmbedSummary:  # fmt: skip
    """Embed ``data``'s ``split`` with the encoder at ``source`` into ``output``; the projector log beside."""
    encoder = load_encoder(source)
    dataset = open_collection(data, split)
    info = encoder_input(data, encoder)
    settings = {"encoder": str(source.resolve()), "encoder_sha256": weights_digest(encoder.state_dict()),
                "data": dataclasses.asdict(data), "split": split, "normalize": normalize,
                "precision": precision.name if precision is not None else "fp32"}  # fmt: skip
    summary = embed_collection(
        encoder, dataset, info, device, output, settings=settings, batch=batch, chunk=chunk, force=force,
        progress=progress, precision=precision, num_workers=data.num_workers,
    )  # fmt: skip
    if projector_images:
        vectors, index, _ = open_embeddings(output)
        rows = projector_rows(len(vectors), projector_images, seed)
        chosen = [index[r] for r in rows]
        images = collection_images(dataset, [int(row["position"]) for row in chosen])
        paths = [source_name(row) for row in chosen]
        labels = [row["label"] for row in chosen]
        summary.projector = str(write_projector(output / PROJECTOR, vectors.take(rows), images, labels, paths))
    return summary


def open_collection(data: DataConfig, split: str):
    """The images ``embed.split`` names: ``collection`` is every image of ``data.root`` (an image folder's or
    shards' held-out test files too; a built-in dataset's training images), the others are the splits of
    :func:`~ssl_pretrain.data.open_split`."""
    if split != "collection":
        return open_split(data, split)
    return open_split(dataclasses.replace(data, pretrain_on_test=True, development=None), "pretrain")


def encoder_input(data: DataConfig, encoder) -> DataInfo:
    """What ``data``'s images become before ``encoder``: its input size and channels (resized and converted on the
    device, as the probe does)."""
    return dataclasses.replace(data_info(data), channels=encoder.spec.in_channels, image_size=encoder.spec.image_size)


def collection_images(dataset, positions: list[int]) -> torch.Tensor:
    """uint8 images of dataset ``positions`` (rows of an embeddings folder: readable when embedded)."""
    batch = dataset.__getitems__(positions)
    if len(batch.images) != len(positions):
        missing = len(positions) - len(batch.images)
        raise BadInput(f"embeddings: {missing} image file(s) can no longer be read since they were embedded")
    return batch.images


def run_embed(config: Config, device: torch.device, force: bool = False) -> EmbedSummary:
    """Embed a collection (``data.*``, ``embed.split``) with the encoder of ``evaluation.encoder`` into
    ``embed.output`` (default ``<run>/embeddings/<data>-<split>``): ``embeddings.npy`` (float32,
    memory-mapped), ``index.csv``, ``skipped.txt``, ``embed.json`` and a TensorBoard projector log. A finished
    output is refused unless ``force``; an unfinished one with the same settings is continued."""
    if config.evaluation.encoder is None:
        raise BadInput("embed: give the encoder (a run directory, encoder.pt or checkpoint)")
    source = Path(config.evaluation.encoder).expanduser()
    if not source.exists():
        raise BadInput(f"evaluation.encoder: {source} does not exist")
    e = config.embed
    output = default_output(source, config.data, e.split, e.output)
    return embed_source(
        source, config.data, e.split, output, normalize=e.normalize, projector_images=e.projector_images,
        chunk=e.chunk_images, batch=config.evaluation.batch_size, device=device,
        precision=resolve_precision(config.trainer.precision, device), seed=config.seed, force=force,
        progress=config.trainer.progress,
    )  # fmt: skip


def format_embed(summary: EmbedSummary) -> str:
    resumed = f" (continued from image {summary.resumed_from})" if summary.resumed_from else ""
    lines = [
        f"{summary.rows} embeddings of width {summary.dim} written to {summary.folder}{resumed}; "
        f"{summary.images_per_s:.0f} images/s; {summary.skipped} unreadable file(s) skipped (skipped.txt)",
        f"embedded: {summary.source}",
    ]
    if summary.projector:
        lines.append(f"projector: tensorboard --logdir {summary.projector}")
    return "\n".join(lines)


def run_neighbours(config: Config, device: torch.device, force: bool = False) -> NeighboursSummary:
    """Nearest neighbours (cosine; exact, or faiss's HNSW with ``neighbours.index=faiss``) of
    ``neighbours.queries`` (image files or folders; none: sampled rows) in the embeddings folder
    ``neighbours.embeddings``, as a PNG grid and JSON, and its near-duplicates (``neighbours.threshold``):
    ``pairs.csv`` and groups whose members are within the threshold of their first image, in
    ``neighbours.output`` (default ``<embeddings>/neighbours``)."""
    n = config.neighbours
    if n.embeddings is None:
        raise BadInput("neighbours.embeddings: give the folder ssl-pretrain embed wrote")
    folder = Path(n.embeddings).expanduser()
    output = Path(n.output).expanduser() if n.output else folder / "neighbours"
    queries = None if n.queries is None else [n.queries] if isinstance(n.queries, str) else list(n.queries)
    duplicates = DuplicateOptions(n.threshold, n.format, n.index, n.candidates)
    return find_neighbours(
        folder, queries, output, num_queries=n.num_queries, k=n.k, duplicates=duplicates, chunk=n.chunk_size,
        device=device, seed=config.seed, force=force, centre=n.centre, batch=config.evaluation.batch_size,
    )  # fmt: skip


def format_neighbours(summary: NeighboursSummary) -> str:
    groups = f"{summary.groups} near-duplicate group(s) of {summary.duplicate_images} images ({summary.pairs} pairs)"
    lines = [f"{summary.queries} queries answered; {groups}"]
    lines += [f"skipped (not a readable image): {path}" for path in summary.skipped_queries]
    lines.append("written: " + ", ".join(summary.files))
    return "\n".join(lines)
