"""``neighbours`` from the values it uses: the nearest neighbours of queries in an embeddings folder, and the
folder's near-duplicates, written as files (the API and the command line read the options from the config)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import torch

from ...config import DataConfig
from ...data.decode import decode_image
from ...errors import BadInput
from ...utils.files import atomic_write_bytes
from ...utils.precision import resolve_precision
from ..shared.encoder_source import load_encoder
from .duplicates import LeaderGroups, grouped_pair_chunks
from .embed import embed_images
from .neighbours import duplicate_report, neighbour_report, save_neighbour_grid, source_name
from .projector import projector_rows
from .run import collection_images, encoder_input, open_collection
from .search import approximate_top_k, collection_mean, top_k_cosine
from .store import IndexRows, open_embeddings

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


@dataclasses.dataclass
class QuerySet:
    names: list[str]
    vectors: torch.Tensor  # (Q, D)
    images: torch.Tensor  # (min(Q, GRID_QUERIES), C, H, W) uint8 at the collection's size: the grid's rows
    exclude: torch.Tensor | None  # (Q,) the query's own row in the collection, -1 outside it
    skipped: list[str]


@dataclasses.dataclass
class DuplicateOptions:
    threshold: float
    fmt: str
    index_kind: str = "exact"
    candidates: int = 32


def find_neighbours(
    folder: Path, queries: list[str] | None, output: Path, *, num_queries: int, k: int, duplicates: DuplicateOptions,
    chunk: int, device: torch.device, seed: int, force: bool, centre: bool = True, batch: int = 256,
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
        query = external_queries(queries, vectors, index, settings, dataset, device, batch)
    else:
        query = sampled_queries(vectors, index, dataset, num_queries, seed)
    mean = collection_mean(vectors, chunk) if centre else None
    search = approximate_top_k if duplicates.index_kind == "faiss" else top_k_cosine
    sims, rows = search(query.vectors, vectors, k, chunk, query.exclude, mean)
    shown = rows[: len(query.images)]
    neighbours = collection_images(dataset, [int(index[r]["position"]) for r in shown.flatten().tolist()])
    grid = save_neighbour_grid(output / "neighbours.png", query.images, neighbours.unflatten(0, shown.shape), sims)
    report = neighbour_report(query.names, rows, sims, index)
    atomic_write_bytes(output / "neighbours.json", (json.dumps(report, indent=2) + "\n").encode())
    groups, pairs, files = near_duplicate_files(vectors, index, output, duplicates, chunk, mean)
    return NeighboursSummary(
        str(output), len(query.names), query.skipped, len(groups), sum(len(g) for g in groups), pairs,
        [str(grid), str(output / "neighbours.json"), *files],
    )  # fmt: skip


def near_duplicate_files(
    vectors, index: IndexRows, output: Path, options: DuplicateOptions, chunk: int, mean: torch.Tensor | None
) -> tuple[list[list[int]], int, list[str]]:
    """Stream every pair at or above the threshold to ``pairs.csv`` (``source_a,source_b,similarity``) while the
    groups are built, then write the groups; memory is one chunk's pairs. Returns the groups, the pair count
    and the files written."""
    output.mkdir(parents=True, exist_ok=True)
    groups, count = LeaderGroups.empty(len(vectors)), 0
    partial = output / ".pairs.csv.tmp"
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["source_a", "source_b", "similarity"])
        chunks = grouped_pair_chunks(
            vectors, options.threshold, chunk, mean, options.index_kind, options.candidates, groups
        )
        for i, j, sims in chunks:
            for a, b, s in zip(i.tolist(), j.tolist(), sims.tolist(), strict=True):
                writer.writerow([source_name(index[a]), source_name(index[b]), f"{s:.4f}"])
            count += len(i)
    partial.replace(output / "pairs.csv")
    found = groups.groups()
    report = output / f"duplicates.{options.fmt}"
    atomic_write_bytes(report, duplicate_report(found, groups.similarity, index, options.fmt))
    return found, count, [str(report), str(output / "pairs.csv")]


def sampled_queries(vectors, index: IndexRows, dataset, count: int, seed: int) -> QuerySet:
    """``count`` rows of the collection drawn by ``seed``, each excluded from its own answer."""
    rows = projector_rows(len(vectors), count, seed)
    images = collection_images(dataset, [int(index[r]["position"]) for r in rows[:GRID_QUERIES]])
    names = [source_name(index[r]) for r in rows]
    return QuerySet(names, torch.from_numpy(vectors.take(rows)), images, torch.as_tensor(rows), [])


def query_files(paths: list[str]) -> list[Path]:
    """The files named, and the image files below the folders named, in order."""
    from ...data.sources import IMAGE_SUFFIXES

    files = []
    for text in paths:
        path = Path(text).expanduser()
        files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    return files


def collection_rows(index: IndexRows, files: list[Path]) -> dict[str, int]:
    """``{resolved path: row}`` of the ``files`` that are rows of the collection (one pass over the index)."""
    wanted, found = {str(f.resolve()) for f in files}, {}
    for row in index:
        path = str(Path(row["path"]).resolve()) if row["path"] else None
        if path in wanted:
            found[path] = int(row["row"])
    return found


def external_queries(paths, collection, index: IndexRows, settings: dict, dataset, device, batch: int) -> QuerySet:
    """Image files (or folders of them) as queries: a file of the collection uses its row of ``collection`` (and is
    not its own neighbour); another is embedded with the collection's encoder, ``batch`` at a time, in the
    precision the collection was embedded in. What is not a readable image is skipped."""
    files = query_files(paths)
    own_row, embedder = collection_rows(index, files), None
    names, vectors, exclude, skipped, shown = [], [], [], [], []
    for start in range(0, len(files), batch):
        decoded = [(f, decode_image(f, dataset.image_size, dataset.channels)) for f in files[start : start + batch]]
        skipped += [str(f) for f, array in decoded if array is None]
        decoded = [(f, torch.from_numpy(array.copy())) for f, array in decoded if array is not None]
        if not decoded:
            continue
        rows = torch.tensor([own_row.get(str(f.resolve()), -1) for f, _ in decoded])
        images = torch.stack([image for _, image in decoded])
        part = torch.empty(len(decoded), collection.shape[1])
        known = rows >= 0
        if known.any():
            part[known] = torch.from_numpy(collection.take(rows[known].tolist()))
        if not known.all():
            embedder = embedder or QueryEmbedder(settings, device)
            part[~known] = embedder(images[~known])
        names += [str(f) for f, _ in decoded]
        vectors.append(part)
        exclude.append(rows)
        shown.append(images[: max(0, GRID_QUERIES - sum(len(s) for s in shown))])
    if not names:
        raise BadInput(f"neighbours.queries: none of the {len(files)} path(s) is a readable image")
    return QuerySet(names, torch.cat(vectors), torch.cat(shown), torch.cat(exclude), skipped)


class QueryEmbedder:
    """The collection's encoder, input conversion, normalisation and precision (``embed.json``'s settings):
    ``(B, C, H, W)`` uint8 images -> ``(B, D)`` float32 vectors as ``embed`` wrote them."""

    def __init__(self, settings: dict, device: torch.device):
        from ..features.feature_view import FeatureView

        encoder = load_encoder(Path(settings["encoder"])).to(device).eval()
        self.view, self.device = FeatureView(encoder), device
        self.info = encoder_input(DataConfig(**settings["data"]), encoder)
        self.precision = resolve_precision(settings.get("precision", "fp32"), device, warn=False)
        self.normalize = settings["normalize"]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        found = embed_images(self.view, images, self.info, self.device, self.precision, self.normalize)
        return torch.from_numpy(found)
