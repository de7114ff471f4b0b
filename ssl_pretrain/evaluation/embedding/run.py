"""``embed`` from the values it uses: where the encoder and the images are, where the output goes, the options
(:mod:`.commands` reads them from the config); ``neighbours`` is :mod:`.find`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ...config import DataConfig
from ...data import DataInfo, data_info, open_split
from ...errors import BadInput
from ...utils.files import weights_digest
from ...utils.precision import Precision
from ..shared.encoder_source import load_encoder, run_dir_of
from .embed import EmbedSummary, embed_collection
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
