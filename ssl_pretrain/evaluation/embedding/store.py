"""An embeddings folder: ``embeddings.npy`` (float32 ``(N, D)``; ``np.load(..., mmap_mode="r")`` reads it
memory-mapped, the framework by position with plain file I/O), ``index.csv`` (one line
per row: the row, the image's position in its dataset, its file path when it has one, its label when known),
``skipped.txt`` (files that could not be read) and ``embed.json`` (what made it, and how far it got).

Rows are written in chunks; after each, the arrays are flushed and ``embed.json`` records the dataset
positions done, so an interrupted ``embed`` continues where it stopped instead of starting again.
"""

from __future__ import annotations

import array
import csv
import io
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import BadInput
from ...utils.files import atomic_write_bytes

VECTORS, INDEX, SKIPPED, RECORD, PROJECTOR = "embeddings.npy", "index.csv", "skipped.txt", "embed.json", "projector"
COLUMNS = ["row", "position", "path", "label"]


@dataclass
class IndexRow:
    position: int
    path: str
    label: str


def read_record(folder: Path) -> dict | None:
    path = folder / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def write_record(folder: Path, record: dict) -> None:
    atomic_write_bytes(folder / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def claim_folder(folder: Path, settings: dict, force: bool) -> dict | None:
    """The unfinished record to continue from, or None to start afresh. A finished folder, or an unfinished
    one made with other settings, is refused unless ``force`` (then it is cleared)."""
    record = read_record(folder)
    if record is None and folder.exists() and any(folder.iterdir()) and not force:
        raise BadInput(f"embed.output: {folder} exists and is not an embeddings folder; choose another or --force")
    if record is None or force:
        for name in (VECTORS, INDEX, SKIPPED, RECORD):
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / PROJECTOR, ignore_errors=True)
        return None
    if record.get("complete"):
        raise BadInput(f"embed.output: {folder} holds finished embeddings; use --force to overwrite them")
    if record.get("settings") != settings:
        before = record.get("settings") or {}
        changed = sorted(k for k in {*before, *settings} if before.get(k) != settings.get(k))
        raise BadInput(
            f"embed.output: {folder} holds unfinished embeddings of other settings ({', '.join(changed)}); use --force"
        )
    return record


class VectorFile:
    """A float32 ``(N, D)`` ``.npy`` file read and written by row position with plain file I/O, not a memory
    map: the memory used is the rows asked for, whatever the file's size (pages of a map would stay resident)."""

    def __init__(self, path: Path, writable: bool = False):
        self.path = path
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if dtype != np.float32 or fortran or len(shape) != 2:
            raise BadInput(f"{path}: not a float32 (N, D) embeddings array")
        self.shape = shape
        self.file = path.open("r+b" if writable else "rb")

    @classmethod
    def create(cls, path: Path, rows: int, dim: int) -> VectorFile:
        """A new file of ``rows`` zero rows (sparse on disk until written)."""
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim)).flush()
        return cls(path, writable=True)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new ``(n, D)`` float32 array."""
        stop = min(stop, self.shape[0])
        count = max(0, stop - start) * self.shape[1]
        self.file.seek(self.offset + 4 * start * self.shape[1])
        return np.frombuffer(self.file.read(4 * count), dtype=np.float32).reshape(-1, self.shape[1]).copy()

    def take(self, rows) -> np.ndarray:
        """The given rows, in the order given, as ``(len(rows), D)``."""
        return np.concatenate([self.read(int(r), int(r) + 1) for r in rows]) if len(rows) else self.read(0, 0)

    def write(self, start: int, rows: np.ndarray) -> None:
        self.file.seek(self.offset + 4 * start * self.shape[1])
        self.file.write(np.ascontiguousarray(rows, dtype=np.float32).tobytes())

    def close(self) -> None:
        self.file.close()


class EmbeddingWriter:
    """Rows appended in order into a preallocated ``(capacity, dim)`` file; ``finish`` trims it to the rows
    written (files that could not be read leave no row)."""

    def __init__(self, folder: Path, capacity: int, dim: int, resume: dict | None):
        self.folder, self.capacity, self.dim = folder, capacity, dim
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / VECTORS
        self.vectors = VectorFile(path, writable=True) if resume else VectorFile.create(path, capacity, dim)
        self.rows = resume["rows_done"] if resume else 0
        if resume:
            _keep_first_records(folder / INDEX, self.rows + 1)  # the header and the rows recorded
            _keep_first_records(folder / SKIPPED, resume.get("skipped", 0), plain_lines=True)
        else:
            (folder / INDEX).write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
            (folder / SKIPPED).write_text("")

    def append(self, vectors: np.ndarray, rows: list[IndexRow], skipped: list[str]) -> None:
        """Write ``vectors (n, D)`` at the next rows and their ``rows`` to the index; refused (ValueError) past
        the capacity or when the two counts differ, before anything is written."""
        if len(vectors) != len(rows) or self.rows + len(vectors) > self.capacity:
            raise ValueError(
                f"embeddings: {len(vectors)} vector(s) and {len(rows)} index row(s) after row {self.rows} "
                f"do not fit the {self.capacity} rows of {self.folder / VECTORS}"
            )
        self.vectors.write(self.rows, vectors)
        with (self.folder / INDEX).open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")  # as the header: one line ending throughout
            for i, row in enumerate(rows):
                writer.writerow([self.rows + i, row.position, row.path, row.label])
        if skipped:
            with (self.folder / SKIPPED).open("a", encoding="utf-8") as f:
                f.write("".join(f"{path}\n" for path in skipped))
        self.rows += len(vectors)

    def flush(self) -> None:
        self.vectors.file.flush()

    def finish(self, chunk_rows: int) -> None:
        """Trim the file to the rows written, copying ``chunk_rows`` at a time (memory stays flat)."""
        self.flush()
        if self.rows == self.capacity:
            self.vectors.close()
            return
        trimmed = VectorFile.create(self.folder / f".{VECTORS}.tmp", self.rows, self.dim)
        for start in range(0, self.rows, chunk_rows):
            trimmed.write(start, self.vectors.read(start, min(self.rows, start + chunk_rows)))
        trimmed.close()
        self.vectors.close()
        trimmed.path.replace(self.folder / VECTORS)


def _keep_first_records(path: Path, count: int, plain_lines: bool = False) -> None:
    """Keep the first ``count`` CSV records of ``path`` (a quoted path may span lines), or its first ``count``
    lines with ``plain_lines``: what a cut-off chunk wrote after them goes. Streamed through a file beside it."""
    partial = path.with_name(f".{path.name}.tmp")
    with path.open(newline="", encoding="utf-8") as source, partial.open("w", newline="", encoding="utf-8") as kept:
        if plain_lines:
            kept.writelines(itertools.islice(source, count))
        else:
            csv.writer(kept, lineterminator="\n").writerows(itertools.islice(csv.reader(source), count))
    partial.replace(path)


def open_vectors(folder: str | Path) -> tuple[VectorFile, dict]:
    """``(vectors (N, D) read by position, embed.json)`` of a finished embeddings folder; the index unread."""
    folder = Path(folder).expanduser()
    record = read_record(folder)
    if record is None or not (folder / VECTORS).is_file():
        raise BadInput(f"neighbours.embeddings: {folder} is not an embeddings folder (run ssl-pretrain embed)")
    if not record.get("complete"):
        raise BadInput(f"neighbours.embeddings: {folder} is unfinished; run ssl-pretrain embed again to complete it")
    return VectorFile(folder / VECTORS), record


def open_embeddings(folder: str | Path) -> tuple[VectorFile, IndexRows, dict]:
    """``(vectors (N, D) read by position, index rows read by row number, embed.json)`` of a finished folder."""
    vectors, record = open_vectors(folder)
    return vectors, IndexRows(Path(folder).expanduser() / INDEX), record


class IndexRows:
    """``index.csv`` read by row number: only each record's byte offset is held (8 bytes a row, not the rows as
    Python dicts); ``rows[r]`` reads row ``r``'s fields from the file, ``iter(rows)`` streams every row."""

    def __init__(self, path: Path):
        self.path = path
        self.offsets = _record_offsets(path)
        self.file = path.open("rb")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __del__(self) -> None:
        if hasattr(self, "file"):
            self.file.close()

    def __getitem__(self, row: int) -> dict:
        if not 0 <= row < len(self):
            raise IndexError(f"{self.path}: no row {row}")
        self.file.seek(self.offsets[row])
        text = self.file.read(self.offsets[row + 1] - self.offsets[row]).decode("utf-8")
        return dict(zip(COLUMNS, next(csv.reader(io.StringIO(text, newline=""))), strict=True))

    def __iter__(self):
        with self.path.open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)


def _record_offsets(path: Path) -> array.array:
    """Byte offsets of each CSV record after the header, and of the file's end: ``(N + 1,)``. A record continues
    on the next line while its count of quote characters is odd (a quoted field holding a line break)."""
    offsets, inside = array.array("q"), False
    with path.open("rb") as f:
        position = len(f.readline())
        for line in f:
            if not inside:
                offsets.append(position)
            inside ^= line.count(b'"') % 2 == 1
            position += len(line)
    offsets.append(position)
    return offsets
