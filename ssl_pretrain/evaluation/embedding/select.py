"""``ssl-pretrain select``: which images to label next, chosen from a collection's embeddings.

The source is an embeddings folder (``embed``'s), or an encoder whose collection is embedded first (into
``<run>/embeddings/<data>-collection``, reused when it is there). The images ``data.labels`` names count as
labeled: the picks add to them. Written to ``select.output`` (default ``<embeddings>/selection-<strategy>-<budget>``):
``selection.csv`` (rank, the image, its cluster and typicality), ``labels.csv`` (the template to fill in and pass
as ``data.labels``, the images already labeled first) and ``selection.png``, the picks in order.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.utils import save_image

from ...config import Config, DataConfig
from ...data.labels import LabelFile, read_label_file
from ...data.shards import shard_paths
from ...errors import BadInput
from ...tasks.parts.preview import label_each
from ...utils.files import atomic_write_bytes
from .clusters import UnitVectors
from .commands import run_embed
from .run import collection_images, default_output, open_collection
from .store import open_embeddings, read_record
from .strategies import Picks, SelectOptions, choose


@dataclass
class SelectSummary:
    """What ``select`` chose and wrote: ``rows`` (embedding rows, in order), ``keys`` (each pick's path
    relative to ``data.root``, its key in shards, or its position), ``labeled_before``, ``seconds`` (the choice
    alone), what the strategy reports (``details``: probcover's radius), the files."""

    output: str
    strategy: str
    rows: list[int]
    keys: list[str]
    labeled_before: int
    seconds: float
    details: dict
    files: list[str]


def run_select(config: Config, device: torch.device) -> SelectSummary:
    """Choose ``select.budget`` images of the source's collection to label with ``select.strategy``."""
    s = config.select
    folder = _embeddings_of(config, device)
    base, index, record = open_embeddings(folder)
    data = DataConfig(**{k: v for k, v in record["settings"]["data"].items() if k in _DATA_KEYS})
    keys, column = _keys(index, data)
    given = read_label_file(config.data.labels) if config.data.labels is not None else None
    labeled = _labeled(given, keys)
    options = SelectOptions(**{f.name: getattr(s, f.name) for f in dataclasses.fields(SelectOptions)})
    start = time.perf_counter()
    picks, details = choose(s.strategy, UnitVectors(base, s.chunk_size), labeled, s.budget, config.seed, options)
    seconds = round(time.perf_counter() - start, 2)
    output = Path(s.output).expanduser() if s.output else folder / f"selection-{s.strategy}-{s.budget}"
    output.mkdir(parents=True, exist_ok=True)
    chosen = [keys[r] for r in picks.rows]
    atomic_write_bytes(output / "selection.csv", _selection_csv(picks, chosen, column))
    atomic_write_bytes(output / "labels.csv", _template(given, chosen, column))
    dataset = open_collection(data, record["settings"]["split"])
    images = collection_images(dataset, [int(index[r]["position"]) for r in picks.rows])
    save_image(label_each(images.float() / 255, [str(i + 1) for i in range(len(images))]), output / "selection.png",
               nrow=max(1, min(20, round(len(images) ** 0.5 * 1.5))), padding=2, pad_value=1.0)  # fmt: skip
    files = [str(output / name) for name in ("selection.csv", "labels.csv", "selection.png")]
    return SelectSummary(str(output), s.strategy, picks.rows, chosen, int(labeled.sum()), seconds, details, files)


_DATA_KEYS = {f.name for f in dataclasses.fields(DataConfig)}


def _embeddings_of(config: Config, device: torch.device) -> Path:
    """The source as an embeddings folder: itself, or its encoder's collection embedded (reused when done)."""
    if config.select.source is None:
        raise BadInput(
            "select: give SOURCE, an embeddings folder or an encoder (run directory, encoder.pt, checkpoint)"
        )
    source = Path(config.select.source).expanduser()
    if read_record(source) is not None:
        return source
    output = default_output(source, config.data, "collection", config.embed.output)
    done = read_record(output)
    if done is None or not done.get("complete"):
        embed = dataclasses.replace(config.embed, split="collection", output=str(output), projector_images=0)
        run_embed(
            dataclasses.replace(
                config, embed=embed, evaluation=dataclasses.replace(config.evaluation, encoder=str(source))
            ),
            device,
        )
    return output


def _keys(index, data: DataConfig) -> tuple[list[str], str]:
    """How a labels file names each index row, and the column that names it: a shard sample by its key
    (``key``), a file by its path relative to ``data.root`` (``path``: the index holds the paths as the folder
    was listed, below ``data.root`` as given), else a position (``index``)."""
    if data.name == "shards":
        return _sample_keys(index, [str(p) for p in shard_paths(data.root)]), "key"
    root = Path(data.root).expanduser() if isinstance(data.root, str) else None
    keys = []
    for row in index:
        path = Path(row["path"]) if row["path"] and root is not None else None
        if path is None:
            keys.append(str(row["position"]))
        else:
            keys.append(path.relative_to(root).as_posix() if path.is_relative_to(root) else row["path"])
    return keys, "path" if root is not None and len(index) and index[0]["path"] else "index"


def _sample_keys(index, shards: list[str]) -> list[str]:
    """The sample keys of streamed shards' index rows, named ``<shard>:<key>`` (rows come shard by shard)."""
    keys, shard = [], ""
    for row in index:
        name = row["path"]
        if not shard or not name.startswith(f"{shard}:"):
            shard = next((s for s in shards if name.startswith(f"{s}:")), "")
        keys.append(name[len(shard) + 1 :] if shard else name)
    return keys


def _labeled(given: LabelFile | None, keys: list[str]) -> torch.Tensor:
    """``(N,)`` bool: the rows ``data.labels`` names (none without it)."""
    named = set() if given is None else {key.removeprefix("./") for key in given.keys}
    return torch.tensor([key in named for key in keys], dtype=torch.bool)


def _selection_csv(picks: Picks, keys: list[str], column: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", column, "cluster", "typicality"])
    for rank, (key, cluster, typical) in enumerate(zip(keys, picks.clusters, picks.typicality, strict=True), start=1):
        writer.writerow([rank, key, cluster, "" if typical != typical else f"{typical:.4f}"])
    return out.getvalue().encode()


def _template(given: LabelFile | None, chosen: list[str], column: str) -> bytes:
    """``path,label`` (``key,label`` for shards, ``index,label`` for a built-in dataset) rows: the rows of
    ``data.labels`` as they are, then the picks with the label left empty (for a built-in dataset an empty label
    is read from the dataset)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([column, "label"])
    if given is not None:
        writer.writerows([key, label or ""] for key, label in zip(given.keys, given.labels, strict=True))
    for key in chosen:
        writer.writerow([key, ""])
    return out.getvalue().encode()


def format_select(summary: SelectSummary) -> str:
    details = "".join(f", {k} {v}" for k, v in summary.details.items())
    return (
        f"{len(summary.rows)} images chosen by {summary.strategy} in {summary.seconds:.1f} s "
        f"({summary.labeled_before} labeled before{details})\n"
        f"label them in labels.csv, then pass data.labels=<that file>; written: {', '.join(summary.files)}"
    )
