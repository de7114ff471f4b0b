"""An encoder put to work on Fashion-MNIST: embedding speed, exact search time and memory, retrieval quality,
and how many planted near-duplicates the default threshold finds.

    python benchmarks/embedding_use.py --memory-only WIDTH [--memory-rows 2000000] [--memory-limit-mb 1024]
    python benchmarks/embedding_use.py --runs RUN [RUN ...] [--held-out 10000] [--memory-rows 2000000]
                                       [--memory-limit-mb 1024] [--shard-images 10000]
                                       [--planted 100] [--others 2000] [--smoke]

The collection is a development split of the training images (``data.development=10000``: the first 50k are
the collection, the last 10k the queries), so the test set is never read. Printed:

- images/s of ``ssl-pretrain embed`` for the first run's encoder (bf16 where the CPU has it natively), from
  memory and, for ``--shard-images`` of the images written as PNG members of tar shards, from the shards;
- the time of an exact top-10 search of 10k query vectors in 60k (random vectors of the encoder's width, the
  sizes the issue names) and in the collection itself;
- peak memory (resident set) of a top-10 search in an embeddings file of ``--memory-rows`` rows, run in a
  memory cgroup of ``--memory-limit-mb`` (smaller than the file; where this process may make a cgroup, else
  unlimited, as the entry says): the file is read a chunk at a time, never whole; its ``index.csv`` is a real
  one (a path and a label a row), opened afterwards as ``neighbours`` opens it to name the rows found;
- precision@10: the share of each query image's 10 nearest collection images (cosine, centred) that share its
  label, for every run's encoder, a randomly initialised one of the first's architecture, and raw pixels; for
  the first encoder also from faiss's HNSW graph (``neighbours.index=faiss``), with its recall of the exact top 10;
- near-duplicates: ``--planted`` collection images copied exactly, cropped (5% of the side cut from each edge,
  rounded: 1 px of 28; resized back),
  JPEG re-encoded (quality 75) and brightened (x1.2) into a folder with 2000 other collection images; at
  several thresholds (the default among them), the share of copies paired with their original, the pairs of
  images with different originals (false pairs) and the biggest group chains of pairs make.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_main  # noqa: E402

import ssl_pretrain as ssl  # noqa: E402
from ssl_pretrain.config import NeighboursConfig  # noqa: E402
from ssl_pretrain.data.shards import write_shards  # noqa: E402
from ssl_pretrain.encoders import encoder_from_spec  # noqa: E402
from ssl_pretrain.encoders.export import export_encoder  # noqa: E402

THRESHOLDS = [0.8, 0.85, 0.9, 0.95, 0.98]
ALTERATIONS = ("exact", "crop", "jpeg", "brightness")


def embed(source, out: Path, base: list[str], split: str):
    return ssl.embed(source, [*base, f"embed.output={out}", f"embed.split={split}", "embed.projector_images=0"])


def labels_of(folder: Path) -> np.ndarray:
    with (folder / "index.csv").open() as f:
        return np.array([row["label"] for row in csv.DictReader(f)])


def precision_at_10(collection: Path, queries: Path, index: str = "exact") -> tuple[float, float, torch.Tensor]:
    """(precision@10, seconds of the search, the rows found) of every query row against the collection."""
    vectors = np.load(queries / "embeddings.npy")
    start = time.perf_counter()
    _, rows = ssl.nearest(vectors, collection, k=10, index=index)
    seconds = time.perf_counter() - start
    same = labels_of(collection)[rows.numpy()] == labels_of(queries)[:, None]
    return 100 * float(same.mean()), seconds, rows


def embeddings_folder(out: Path, vectors: np.ndarray, labels: list[str]) -> Path:
    """An embeddings folder written by hand, as any program can: ``embeddings.npy``, ``index.csv``, a record."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    with (out / "index.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "position", "path", "label"])
        writer.writerows([i, i, "", label] for i, label in enumerate(labels))
    (out / "embed.json").write_text(json.dumps({"complete": True, "written_by": "benchmarks/embedding_use.py"}))
    return out


def raw_pixels(out: Path, base: list[str], split: str) -> Path:
    """The control: each image's flattened pixels in [0, 1] as its embedding."""
    from ssl_pretrain.data import open_split

    dataset = open_split(ssl.load_config(None, base).data, split)
    pixels = dataset.images.flatten(1).float().div(255).numpy()
    return embeddings_folder(out, pixels, [str(int(label)) for label in dataset.labels])


def random_init_source(run: Path, out: Path) -> Path:
    torch.manual_seed(0)
    return export_encoder(encoder_from_spec(ssl.load_encoder(run).spec), out)


def shard_embedding(source: Path, work: Path, base: list[str], overrides: list[str], count: int):
    """``embed``'s summary for ``count`` query images written as PNG members of tar shards (their streamed
    pretraining split: read in shard order, decoded in the calling process)."""
    from ssl_pretrain.data import open_split

    dataset = open_split(ssl.load_config(None, base).data, "test")
    folder = work / "png"
    for position in range(min(count, len(dataset))):
        labelled = folder / f"class_{int(dataset.labels[position])}"
        labelled.mkdir(parents=True, exist_ok=True)
        Image.fromarray(dataset.images[position][0].numpy()).save(labelled / f"{position:05d}.png")
    shards, _ = write_shards(folder, str(work / "shards" / "part-%06d.tar"), 1000)
    data = ["data.name=shards", f"data.root={shards[0].parent}", "data.image_size=28", "data.channels=1",
            "data.development=null"]  # fmt: skip
    return embed(source, work / "from-shards", [*overrides, *data, "data.pretrain_on_test=true"], "pretrain")


def synthetic_search_seconds(dim: int, base_rows: int = 60000, queries: int = 10000) -> float:
    vectors = np.random.default_rng(0).standard_normal((base_rows, dim), dtype=np.float32)
    folder = embeddings_folder(Path(tempfile.mkdtemp(prefix="ssl_search_")), vectors, [""] * base_rows)
    q = np.random.default_rng(1).standard_normal((queries, dim), dtype=np.float32)
    start = time.perf_counter()
    ssl.nearest(q, folder, k=10)
    return time.perf_counter() - start


MEMORY_CHILD = """
import sys, numpy as np, ssl_pretrain as ssl
def peak_mb():  # this process's own high-water mark (ru_maxrss would carry the parent's peak across exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
from ssl_pretrain.evaluation.embedding.store import open_embeddings
before = peak_mb()
q = np.random.default_rng(1).standard_normal((1000, int(sys.argv[2])), dtype=np.float32)
_, rows = ssl.nearest(q, sys.argv[1], k=10)
searched = peak_mb()
_, index, _ = open_embeddings(sys.argv[1])  # what neighbours reads: each row's offset, then the rows it names
names = [index[r]["path"] for r in rows.flatten().tolist()]
assert len(names) == 10000 and all(names)
print(before, searched, peak_mb())
"""


def memory_figures(rows: int, dim: int, limit_mb: int) -> MemoryFigures:
    """The peak resident memory of a search and of naming its rows, in a fresh process, held to ``limit_mb`` by a
    memory cgroup where this process may make one; the embeddings file has a real ``index.csv``."""
    folder = Path(tempfile.mkdtemp(prefix="ssl_memory_"))
    vectors = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float32, shape=(rows, dim))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100000):
        vectors[start : start + 100000] = rng.standard_normal((min(100000, rows - start), dim), dtype=np.float32)
    vectors.flush()
    del vectors
    write_index(folder / "index.csv", rows)
    (folder / "embed.json").write_text(json.dumps({"complete": True}))
    group = memory_group(limit_mb)
    child = subprocess.Popen(
        [sys.executable, "-c", MEMORY_CHILD, str(folder), str(dim)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if group is not None:  # joined at once: the child is still importing, the search comes after
        (group / "cgroup.procs").write_text(str(child.pid))
    out, err = child.communicate()
    charged = None
    if group is not None:  # what the group was charged at its peak: new pages and page cache, not shared libraries
        charged = int((group / "memory.max_usage_in_bytes").read_text()) / 2**20  # already in the page cache
        group.rmdir()
    if child.returncode:
        raise SystemExit(f"the search under {limit_mb} MB failed ({child.returncode}): {err}")
    imported, peak, named = (float(x) for x in out.split())
    size = (folder / "embeddings.npy").stat().st_size / 2**20
    index_mb = (folder / "index.csv").stat().st_size / 2**20
    for path in folder.iterdir():
        path.unlink()
    limit = (
        f"a {limit_mb} MB memory cgroup (no swap on this machine; the group's peak charge, page cache included, "
        f"{charged:.0f} MB)"
        if group
        else "no memory limit (no cgroup here)"
    )
    return MemoryFigures(size, index_mb, imported, peak, named, limit)


@dataclass
class MemoryFigures:
    """MB: the embeddings file, its index.csv, resident after import, after the search, after naming its rows."""

    vectors_mb: float
    index_mb: float
    imported_mb: float
    search_mb: float
    named_mb: float
    limit: str

    def sentence(self, rows: int) -> str:
        return (
            f"A top-10 search of 1000 queries in a {self.vectors_mb:.0f} MB embeddings file of {rows} rows with a "
            f"{self.index_mb:.0f} MB index.csv (a path and a label a row), run under {self.limit}: peak resident "
            f"memory {self.search_mb:.0f} MB after `ssl.nearest` ({self.imported_mb:.0f} MB after importing the "
            f"library), {self.named_mb:.0f} MB after opening the index as `neighbours` does and naming the 10,000 "
            "rows found."
        )


def write_index(path: Path, rows: int) -> None:
    """An index.csv of ``rows`` rows as ``embed`` writes one for an image folder: a file path and a class name."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["row", "position", "path", "label"])
        for start in range(0, rows, 100000):
            writer.writerows(
                [r, r, f"/data/photos/class_{r % 10}/image_{r:08d}.jpg", f"class_{r % 10}"]
                for r in range(start, min(rows, start + 100000))
            )


def memory_group(limit_mb: int) -> Path | None:
    """A cgroup (v1 memory controller) holding its processes to ``limit_mb`` of memory, page cache included, or
    None where this process may not make one (then the search runs unlimited and the entry says so)."""
    group = Path("/sys/fs/cgroup/memory") / f"ssl_pretrain_bench_{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
    except OSError:
        if group.is_dir():
            group.rmdir()
        return None
    return group


def plant_duplicates(out: Path, data: list[str], planted: int, others: int) -> dict[str, str]:
    """PNG files of ``others`` collection images plus ``planted`` originals and their altered copies;
    returns ``{copy file: original file}``."""
    from ssl_pretrain.data import open_split

    dataset = open_split(ssl.load_config(None, data).data, "train")
    order = np.random.default_rng(0).permutation(len(dataset))[: planted + others]
    origin = {}
    for n, position in enumerate(order.tolist()):
        image = Image.fromarray(dataset.images[position][0].numpy())
        name = out / f"{position:05d}.png"
        image.save(name)
        if n >= planted:
            continue
        w, h = image.size
        cut = round(w * 0.05)
        altered = {
            "exact": image,
            "crop": image.crop((cut, cut, w - cut, h - cut)).resize((w, h), Image.BILINEAR),
            "brightness": ImageEnhance.Brightness(image).enhance(1.2),
        }
        for kind, copy in altered.items():
            copy.save(out / f"{position:05d}-{kind}.png")
            origin[str(out / f"{position:05d}-{kind}.png")] = str(name)
        image.save(out / f"{position:05d}-jpeg.jpg", quality=75)
        origin[str(out / f"{position:05d}-jpeg.jpg")] = str(name)
    return origin


def duplicate_rows(run: Path, folder: Path, origin: dict[str, str], work: Path, base: list[str]) -> list[str]:
    out = work / f"dup-{run.name}"
    folder_data = ["data.name=image_folder", f"data.root={folder}", "data.development=null", "data.image_size=28"]
    ssl.embed(run, [*base, *folder_data, "data.channels=1", f"embed.output={out}", "embed.projector_images=0"])
    with (out / "index.csv").open() as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    lines = []
    row_of = {path: i for i, path in enumerate(paths)}
    original_of = {p: origin.get(p, p) for p in paths}
    planted = [(row_of[original], row_of[copy], Path(copy).stem.split("-")[1]) for copy, original in origin.items()]
    for threshold in THRESHOLDS:
        groups, pairs = ssl.near_duplicates(out, threshold)
        found_pairs = {(min(i, j), max(i, j)) for i, j, _ in pairs}
        found = {kind: 0 for kind in ALTERATIONS}
        for original, copy, kind in planted:
            found[kind] += (min(original, copy), max(original, copy)) in found_pairs
        false = sum(original_of[paths[i]] != original_of[paths[j]] for i, j, _ in pairs)
        per_kind = " | ".join(f"{100 * found[k] / (len(origin) / 4):.0f}%" for k in ALTERATIONS)
        marker = " (default)" if threshold == NeighboursConfig().threshold else ""
        biggest = len(groups[0]) if groups else 0
        lines.append(f"| {run.name} | {threshold}{marker} | {per_kind} | {false} | {biggest} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+", type=Path, help="pretraining run directories (all but --memory-only)")
    parser.add_argument("--memory-only", type=int, metavar="WIDTH", help="only the memory figure, vectors this wide")
    parser.add_argument("--held-out", type=int, default=10000)
    parser.add_argument("--memory-rows", type=int, default=2_000_000)
    parser.add_argument("--memory-limit-mb", type=int, default=1024, help="memory allowed to that search")
    parser.add_argument("--shard-images", type=int, default=10000, help="images embedded from tar shards")
    parser.add_argument("--planted", type=int, default=100)
    parser.add_argument("--others", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ssl_embedding_use_"))
    if args.smoke:
        args.planted, args.others, args.memory_rows = min(args.planted, 4), min(args.others, 20), 20000
        args.memory_limit_mb, args.shard_images = 2048, 16
    if args.memory_only:
        memory = memory_figures(args.memory_rows, args.memory_only, args.memory_limit_mb)
        report("Search memory with a real index (benchmarks/embedding_use.py --memory-only)",
               memory.sentence(args.memory_rows), args.smoke)  # fmt: skip
        return
    if not args.runs:
        parser.error("--runs is required (or --memory-only WIDTH)")
    base = [f"data.development={args.held_out}", "trainer.progress=false", *args.overrides]
    first = args.runs[0]
    summary = embed(first, work / f"{first.name}-collection", base, "train")
    plain = ["trainer.progress=false", *args.overrides]
    from_shards = shard_embedding(first, work, base, plain, args.shard_images)
    embed(first, work / f"{first.name}-queries", base, "test")
    lines = ["| encoder | precision@10 | search seconds (10k queries) |", "|---|---|---|"]
    sources = [(run.name, run) for run in args.runs]
    sources.append(("random init", random_init_source(first, work / "random")))
    for name, source in sources:
        collection, queries = work / f"{name}-collection", work / f"{name}-queries"
        if not (collection / "embed.json").is_file():
            embed(source, collection, base, "train")
            embed(source, queries, base, "test")
        precision, seconds, exact = precision_at_10(collection, queries)
        lines.append(f"| {name} | {precision:.2f}% | {seconds:.1f} |")
        if source == first:
            approximate = precision_at_10(collection, queries, index="faiss")
            pairs = zip(approximate[2].tolist(), exact.tolist(), strict=True)
            recall = np.mean([len(set(a) & set(e)) / 10 for a, e in pairs])
            lines.append(f"| {name}, faiss HNSW (recall@10 vs exact {100 * recall:.1f}%) | {approximate[0]:.2f}% | "
                         f"{approximate[1]:.1f} |")  # fmt: skip
    raw = raw_pixels(work / "raw-collection", base, "train"), raw_pixels(work / "raw-queries", base, "test")
    precision, seconds, _ = precision_at_10(*raw)
    lines.append(f"| raw pixels | {precision:.2f}% | {seconds:.1f} |")
    dim = summary.dim
    search = synthetic_search_seconds(dim, *((2000, 500) if args.smoke else ()))
    memory = memory_figures(args.memory_rows, dim, args.memory_limit_mb)
    folder = work / "planted"
    folder.mkdir()
    origin = plant_duplicates(folder, base, args.planted, args.others)
    dup = [f"| encoder | threshold | {' | '.join(ALTERATIONS)} | false pairs | biggest group |"]
    dup.append("|---|---|" + "---|" * len(ALTERATIONS) + "---|---|")
    for run in args.runs:
        dup += duplicate_rows(run, folder, origin, work, base)
    body = (
        f"Collection: the first {summary.rows} training images (`data.development={args.held_out}`), queries: the last "
        f"{args.held_out}; the test set was not read. Embedding with {first.name}: {summary.images_per_s:.0f} "
        f"images/s ({summary.rows} images, {summary.seconds:.1f} s); {from_shards.rows} query images written as PNG "
        f"members of tar shards and embedded from the shards (read in shard order): {from_shards.images_per_s:.0f} "
        f"images/s. Exact top-10 of 10k random {dim}-d queries in "
        f"60k vectors: {search:.1f} s. {memory.sentence(args.memory_rows)}\n\n"
        "Retrieval: share of each query's 10 nearest collection images with its label (cosine of centred "
        "embeddings).\n\n" + "\n".join(lines) + "\n\nNear-duplicates: share of planted copies paired with their "
        "original at each threshold; false pairs: pairs of images with different originals (Fashion-MNIST holds "
        f"near-identical items of its own); biggest group: images joined by chains of pairs ({len(origin) // 4} "
        "originals, one copy of each kind, among "
        f"{args.others} other images).\n\n" + "\n".join(dup)
    )
    report("Embeddings at work: speed, search, memory, retrieval, near-duplicates (benchmarks/embedding_use.py)",
           body, args.smoke)  # fmt: skip


if __name__ == "__main__":
    run_main(main)
