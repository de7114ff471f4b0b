"""The ``embed`` and ``neighbours`` commands: their config read, the work done by :mod:`.run` and :mod:`.find`,
the summary line the command line prints."""

from __future__ import annotations

from pathlib import Path

import torch

from ...config import Config
from ...errors import BadInput
from ...utils.precision import resolve_precision
from .embed import EmbedSummary
from .find import DuplicateOptions, NeighboursSummary, find_neighbours
from .run import default_output, embed_source


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
