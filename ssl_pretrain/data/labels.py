"""Partly labelled collections: ``data.labels=FILE.csv`` says which images have labels; every other image is
unlabeled.

The file has a header. For an image folder (or a flat folder of images, no class sub-folders) its rows are
``path,label``, paths relative to ``data.root``; the column names a labelling tool exports are read too
(``image``/``file``/``filename`` for the path, ``choice``/``class``/``category`` for the label: Label Studio's
CSV export is ``image,choice``). For a built-in dataset the rows name positions in its training images,
``index,label``, or ``index`` alone: the true label is then read from the dataset (how a benchmark simulates a
person labelling the picks). For shards (``data.name=shards``) the rows are ``key,label``, the samples'
WebDataset keys. Labels are class names (an image folder's are sorted into class numbers), class numbers for a
built-in dataset, either for shards.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BadInput

PATH_COLUMNS = ("path", "key", "image", "file", "filename")
LABEL_COLUMNS = ("label", "choice", "class", "category")


@dataclass
class LabelFile:
    """What a labels file says: ``keys`` (relative paths, or positions as text with ``by_index``) and each
    one's ``label`` (None: read it from the dataset; only for ``index``-only files)."""

    path: Path
    keys: list[str]
    labels: list[str | None]
    by_index: bool


def labels_digest(path: str | Path | None) -> str | None:
    """The SHA-256 of a labels file's bytes (None without one): which labeled images a run held its test
    images out of (``data_split.json``)."""
    return None if path is None else hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


def read_label_file(path: str | Path) -> LabelFile:
    """The rows of ``path``; a missing file, an unknown header, an empty label or a key given two labels is
    bad input naming the row (``data.labels: FILE row N: ...``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"data.labels: {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        key_column = next((columns[c] for c in ("index", *PATH_COLUMNS) if c in columns), None)
        label_column = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
        if key_column is None:
            raise BadInput(f"data.labels: {path} needs a header with path,label (or image,choice; or index[,label])")
        by_index = key_column == columns.get("index")
        if label_column is None and not by_index:
            raise BadInput(f"data.labels: {path} has no label column ({', '.join(LABEL_COLUMNS)})")
        seen: dict[str, str | None] = {}
        for number, row in enumerate(reader, start=2):  # row 1 is the header
            key, label = _row(path, number, row, key_column, label_column, by_index)
            if key in seen and seen[key] != label:
                raise BadInput(f"data.labels: {path} row {number}: {key} is labelled twice ({seen[key]!r}, {label!r})")
            seen[key] = label
    if not seen:
        raise BadInput(f"data.labels: {path} names no image")
    return LabelFile(path, list(seen), list(seen.values()), by_index)


def _row(path: Path, number: int, row: dict, key_column: str, label_column: str | None, by_index: bool):
    key = (row.get(key_column) or "").strip()
    label = (row.get(label_column) or "").strip() if label_column else None
    where = f"data.labels: {path} row {number}"
    if not key:
        raise BadInput(f"{where}: no {key_column}")
    if by_index and not key.isdigit():
        raise BadInput(f"{where}: index {key!r} is not a position (0, 1, ...)")
    if label_column is not None and not label and not by_index:
        raise BadInput(f"{where}: {key} has an empty label")
    return key, label or None


def folder_labels(labels: LabelFile, files: list[Path], root: Path) -> tuple[list[int], list[str]]:
    """``(label of each file, -1 where it has no row; the class names, sorted)`` of an image folder's ``files``
    below ``root``; a row naming a file that is not there is bad input."""
    if labels.by_index:
        raise BadInput(f"data.labels: {labels.path} names positions (index); an image folder's rows name paths")
    position = {f.relative_to(root).as_posix(): i for i, f in enumerate(files)}
    missing = [key for key in labels.keys if key.removeprefix("./") not in position]
    if missing:
        number = labels.keys.index(missing[0]) + 2
        raise BadInput(f"data.labels: {labels.path} row {number}: {missing[0]} is not an image file in {root}")
    classes = sorted({label for label in labels.labels if label is not None})
    index = {name: i for i, name in enumerate(classes)}
    out = [-1] * len(files)
    for key, label in zip(labels.keys, labels.labels, strict=True):
        out[position[key.removeprefix("./")]] = index[label]
    return out, classes


def indexed_labels(labels: LabelFile, true_labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` labels of a built-in dataset's training images: the row's class number (or the true label for
    an ``index``-only row), -1 for images without a row."""
    if not labels.by_index:
        raise BadInput(f"data.labels: {labels.path} names paths; for a built-in dataset the rows are index,label")
    out = torch.full((len(true_labels),), -1, dtype=torch.long)
    for number, (key, label) in enumerate(zip(labels.keys, labels.labels, strict=True), start=2):
        position = int(key)
        if position >= len(true_labels):
            raise BadInput(
                f"data.labels: {labels.path} row {number}: index {position} is past the {len(true_labels)} images"
            )
        if label is not None and not label.isdigit():
            raise BadInput(f"data.labels: {labels.path} row {number}: a built-in dataset's label is a class number")
        out[position] = int(label) if label is not None else int(true_labels[position])
    return out


def key_labels(labels: LabelFile) -> dict[str, int]:
    """``{sample key: class number}`` of a shards labels file: labels that are all numbers are class numbers,
    as the shards' ``cls`` members hold them; class names are numbered in sorted order (as ``ssl-pretrain shard``
    numbers an image folder's sub-folders)."""
    if labels.by_index:
        raise BadInput(f"data.labels: {labels.path} names positions (index); for shards the rows are key,label")
    names = [str(label) for label in labels.labels]
    if all(name.isdigit() for name in names):
        return {key: int(name) for key, name in zip(labels.keys, names, strict=True)}
    number = {name: i for i, name in enumerate(sorted(set(names)))}
    return {key: number[name] for key, name in zip(labels.keys, names, strict=True)}
