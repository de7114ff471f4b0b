"""``embed`` and ``neighbours`` from the values they use: where the encoder and the images are, where the
output goes, the options (the API and the command line read them from the config)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ...config import DataConfig
from ...data import DataInfo, data_info, open_split
from ...data.decode import decode_image
from ...errors import BadInput
from ...utils.files import atomic_write_bytes, weights_digest
from ...utils.precision import Precision
from ..shared.encoder_source import load_encoder, run_dir_of
from .embed import EmbedSummary, embed_collection, embed_images
from .neighbours import duplicate_report, neighbour_report, save_neighbour_grid, source_name
from .projector import projector_rows, write_projector
from .search import approximate_top_k, collection_mean, duplicate_groups, similar_pairs, top_k_cosine
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
    settings = {"encoder": str(source.resolve()), "encoder_sha256": weights_digest(encoder),
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


GRID_QUERIES = 64  # rows of neighbours.png (neighbours.json has every query)


@dataclasses.dataclass
class NeighboursSummary:
    """What ``neighbours`` wrote: the files, the queries answered and skipped, the near-duplicate groups."""

    output: str
    queries: int
    skipped_queries: list[str]
    groups: int
    duplicate_images: int
    pairs: int
    files: list[str]


def find_neighbours(
    folder: Path, queries: list[str] | None, output: Path, *, num_queries: int, k: int, threshold: float,
    fmt: str, chunk: int, device: torch.device, seed: int, force: bool, centre: bool = True, index_kind: str = "exact",
) -> NeighboursSummary:  # fmt: skip
    """Nearest neighbours of the ``queries`` (image files or folders; None: ``num_queries`` sampled rows) in
    the embeddings ``folder``, and its near-duplicate groups, written to ``output``; cosines of embeddings
    centred on the collection's mean unless not ``centre``."""
    vectors, index, record = open_embeddings(folder)
    if output.exists() and any(output.iterdir()) and not force:
        raise BadInput(f"neighbours.output: {output} exists; choose another folder or use --force")
    settings = record["settings"]
    dataset = open_collection(DataConfig(**settings["data"]), settings["split"])
    if queries:
        query = external_queries(queries, vectors, index, settings, dataset, device)
    else:
        rows = projector_rows(len(vectors), num_queries, seed)
        images = collection_images(dataset, [int(index[r]["position"]) for r in rows])
        vectors_q = torch.from_numpy(vectors.take(rows))
        query = QuerySet([source_name(index[r]) for r in rows], vectors_q, images, torch.as_tensor(rows), [])
    mean = collection_mean(vectors, chunk) if centre else None
    search = approximate_top_k if index_kind == "faiss" else top_k_cosine
    sims, rows = search(query.vectors, vectors, k, chunk, query.exclude, mean)
    shown = rows[:GRID_QUERIES]
    neighbours = collection_images(dataset, [int(index[r]["position"]) for r in shown.flatten().tolist()])
    grid = save_neighbour_grid(
        output / "neighbours.png",
        query.images[:GRID_QUERIES],
        neighbours.unflatten(0, shown.shape),
        sims[:GRID_QUERIES],
    )
    report = neighbour_report(query.names, rows, sims, index)
    atomic_write_bytes(output / "neighbours.json", (json.dumps(report, indent=2) + "\n").encode())
    pairs = similar_pairs(vectors, threshold, chunk, mean)
    groups = duplicate_groups(pairs)
    duplicates = output / f"duplicates.{fmt}"
    atomic_write_bytes(duplicates, duplicate_report(groups, index, fmt))
    files = [str(grid), str(output / "neighbours.json"), str(duplicates)]
    return NeighboursSummary(
        str(output), len(query.names), query.skipped, len(groups), sum(len(g) for g in groups), len(pairs), files
    )


@dataclasses.dataclass
class QuerySet:
    names: list[str]
    vectors: torch.Tensor  # (Q, D)
    images: torch.Tensor  # (Q, C, H, W) uint8 at the collection's size
    exclude: torch.Tensor | None  # (Q,) the query's own row in the collection, -1 outside it
    skipped: list[str]


def external_queries(paths: list[str], collection, index: list[dict], settings: dict, dataset, device) -> QuerySet:
    """Image files (or folders of them) as queries: a file of the collection uses its row of ``collection`` (and is
    not its own neighbour); another is embedded with the collection's encoder. What is not a readable image is
    skipped."""
    from ...data.sources import IMAGE_SUFFIXES
    from ..frozen.feature_view import FeatureView

    rows_by_path = {str(Path(row["path"]).resolve()): int(row["row"]) for row in index if row["path"]}
    files = []
    for text in paths:
        path = Path(text).expanduser()
        files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    names, images, skipped = [], [], []
    for path in files:
        array = decode_image(path, dataset.image_size, dataset.channels)
        if array is None:
            skipped.append(str(path))
            continue
        names.append(str(path))
        images.append(torch.from_numpy(array.copy()))
    if not names:
        raise BadInput(f"neighbours.queries: none of the {len(files)} path(s) is a readable image")
    images_t = torch.stack(images)
    exclude = torch.tensor([rows_by_path.get(str(Path(n).resolve()), -1) for n in names])
    vectors = torch.empty(len(names), collection.shape[1])
    known = exclude >= 0
    if known.any():
        vectors[known] = torch.from_numpy(collection.take(exclude[known].tolist()))
    if not known.all():
        encoder = load_encoder(Path(settings["encoder"])).to(device).eval()
        info = encoder_input(DataConfig(**settings["data"]), encoder)
        outside = embed_images(FeatureView(encoder), images_t[~known], info, device, None, settings["normalize"])
        vectors[~known] = torch.from_numpy(outside)
    return QuerySet(names, vectors, images_t, exclude, skipped)
