"""Pretrain one shipped config on the 60k Fashion-MNIST training images, then probe it.

Prints and appends to RESULTS.md: pretraining wall time, images/s, pretext accuracy, and the
linear-probe top-1 of the pretrained encoder next to a randomly initialised one and raw pixels.
``--smoke`` runs a few steps on a few hundred images only.

    python benchmarks/pretext_fashion_mnist.py --task rotation [--smoke] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_results  # noqa: E402

from ssl_pretrain.config import load_config  # noqa: E402
from ssl_pretrain.evaluation.probe import run_probe  # noqa: E402
from ssl_pretrain.train.trainer import pretrain  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
SMOKE = ["data.limit=256", "trainer.max_steps=3", "trainer.batch_size=32", "probe.train_limit=500", "probe.max_iter=20"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="dae", help="a config in configs/fashion_mnist/ (file name without .yaml)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="ssl_bench_")
    overrides = [f"output_dir={out}", "trainer.progress=false", "probe.control=all"]
    config = load_config(CONFIGS / f"{args.task}.yaml", overrides + (SMOKE if args.smoke else []) + args.overrides)
    start = time.perf_counter()
    run_dir = pretrain(config)
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config.probe.encoder = str(run_dir)
    start = time.perf_counter()
    report = run_probe(config)
    probe_wall = time.perf_counter() - start
    top1 = {r["encoder"]: r["top1"] for r in report["results"]}
    accuracy = metrics.get("pretext_accuracy")
    table = (
        "| task | backbone | images | epochs | pretrain wall time | images/s | pretext acc. | probe top-1 "
        "pretrained | random init | raw pixels | probe wall time |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {args.task} | {config.model.backbone} {config.model.options.get('widths', '')} | "
        f"{metrics['images_seen']} | {metrics['epochs']} | {wall / 60:.1f} min | {metrics['images_per_s']:.0f} | "
        f"{'-' if accuracy is None else f'{100 * accuracy:.1f}%'} | {top1['pretrained']:.2f}% | "
        f"{top1['random_init']:.2f}% | {top1['raw_pixels']:.2f}% | {probe_wall / 60:.1f} min |"
    )
    print(table)
    if not args.smoke:
        append_results(
            f"{args.task} on Fashion-MNIST: pretraining time and linear probe (benchmarks/pretext_fashion_mnist.py)",
            table + f"\n\nOverrides: {' '.join(args.overrides) or 'none'}",
        )


if __name__ == "__main__":
    main()
