"""``ssl-pretrain select`` against the collection's size: the seconds and the peak memory of each strategy
choosing ``--budget`` images among the first N of Fashion-MNIST's training images (the encoder's embeddings,
``ssl.embed`` with ``data.limit=N``), each selection in a fresh process through ``ssl.select``.

Memory is the process's resident high-water mark (``VmHWM``) above what importing the package left, and that
less the size of the embeddings themselves (held in memory as unit rows while they fit in 2 GB): what a strategy
needs beyond its embeddings. ``--encoder RUN`` reuses a finished pretraining run; by default the shipped VICReg
config is pretrained into ``--runs`` (reused when finished), as ``label_budget.py`` does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, report, run_main  # noqa: E402
from label_budget import STRATEGIES, encoder_run  # noqa: E402
from label_budget_cells import pretraining_embeddings  # noqa: E402

CHILD = """
import json, sys
import ssl_pretrain as ssl

def peak_mb():  # this process's own high-water mark (ru_maxrss would carry the parent's peak across exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024

imported = peak_mb()
folder, strategy, budget, output = sys.argv[1:5]
summary = ssl.select(folder, {"select.budget": int(budget), "select.strategy": strategy, "select.output": output,
                              "trainer.progress": False})
print(json.dumps({"imported_mb": imported, "peak_mb": peak_mb(), "seconds": summary.seconds}))
"""


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "select_memory")
    parser.add_argument("--encoder", type=Path, help="a finished pretraining run (default: pretrain vicreg.yaml)")
    parser.add_argument("--sizes", type=int, nargs="+", help="collection sizes (default 15000 30000 60000)")
    parser.add_argument("--strategies", nargs="+", default=[*STRATEGIES, "random"])
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--smoke", action="store_true", help="a tiny pretraining, 256 and 512 images, budget 10")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="for the pretraining and the embedding")
    args = parser.parse_args()
    args.sizes = args.sizes or ([256, 512] if args.smoke else [15000, 30000, 60000])
    args.budget = 10 if args.smoke else args.budget
    return args


def embeddings(run: Path, work: Path, rows: int, extra: list[str]) -> tuple[Path, float]:
    """The first ``rows`` training images embedded (reused when complete), and their size in MB."""
    folder = pretraining_embeddings(run, run, work / f"embeddings-{rows}", [f"data.limit={rows}", *extra])
    vectors = np.load(folder / "embeddings.npy", mmap_mode="r")
    return folder, vectors.size * 4 / 2**20


def measured(folder: Path, strategy: str, budget: int) -> dict:
    """One selection in a fresh process: its seconds, and MB resident after import and at its peak."""
    output = folder / f"selection-{strategy}-{budget}"
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), strategy, str(budget), str(output)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"select {strategy} in {folder} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parsed_args()
    run, work = encoder_run(args), args.runs / "select_memory"
    extra = [*(["evaluation.batch_size=256"] if args.smoke else []), *args.overrides]
    figures, sizes_mb = {}, {}
    for rows in args.sizes:
        folder, sizes_mb[rows] = embeddings(run, work, rows, extra)
        for strategy in args.strategies:
            figures[(strategy, rows)] = cell = measured(folder, strategy, args.budget)
            print(f"{rows:>6} {strategy:<10} {cell}", flush=True)
    head = "| strategy | " + " | ".join(f"N = {n}" for n in args.sizes) + " |\n|" + " --- |" * (len(args.sizes) + 1)
    tables = [
        ("Seconds to choose", lambda c, n: f"{c['seconds']:.2f}"),
        ("Peak resident MB above the import", lambda c, n: f"{c['peak_mb'] - c['imported_mb']:.0f}"),
        ("The same less the embeddings' own MB", lambda c, n: f"{c['peak_mb'] - c['imported_mb'] - sizes_mb[n]:.0f}"),
    ]
    body = f"{args.budget} images chosen among the first N training images; embeddings: " + ", ".join(
        f"{sizes_mb[n]:.1f} MB at N = {n}" for n in args.sizes
    )
    for title, cell in tables:
        lines = [f"| {s} | " + " | ".join(cell(figures[(s, n)], n) for n in args.sizes) + " |" for s in args.strategies]
        body += f"\n\n{title}:\n\n{head}\n" + "\n".join(lines)
    record = {f"{s} {n}": {**c, "embeddings_mb": sizes_mb[n]} for (s, n), c in figures.items()}
    report("Selection against the collection's size (benchmarks/select_memory.py)", body, args.smoke,
           {"cells": record}, work)  # fmt: skip


if __name__ == "__main__":
    run_main(main)
