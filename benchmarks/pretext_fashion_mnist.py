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


def probe_rows(config, run_dir: Path, probes: list[str]) -> tuple[str, float]:
    """One table row per probe variant (``probe.KEY=VALUE`` overrides, comma-separated)."""
    lines = [
        "| probe | layer | dim | pretrained | random init | raw pixels | probe wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    raw = "-"
    for i, variant in enumerate(probes):
        probe_config = load_config(
            run_dir / "config.yaml",
            [f"probe.encoder={run_dir}", *variant.split(",")] + [f"probe.control={'all' if i == 0 else 'random_init'}"],
        )
        start = time.perf_counter()
        rows = {r["encoder"]: r for r in run_probe(probe_config)["results"]}
        raw = f"{rows['raw_pixels']['top1']:.2f}%" if "raw_pixels" in rows else raw
        lines.append(
            f"| `{variant}` | {rows['pretrained']['layer']} | {rows['pretrained']['feature_dim']} | "
            f"**{rows['pretrained']['top1']:.2f}%** | {rows['random_init']['top1']:.2f}% | {raw} | "
            f"{(time.perf_counter() - start) / 60:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="dae", help="a config in configs/fashion_mnist/ (file name without .yaml)")
    parser.add_argument(
        "--probes",
        nargs="+",
        default=["probe.pool=1"],
        help="probe variants, each comma-separated probe.KEY=VALUE overrides",
    )
    parser.add_argument("--run", type=Path, help="probe this finished run instead of pretraining")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="ssl_bench_")
    overrides = [f"output_dir={out}", "trainer.progress=false"]
    config = load_config(CONFIGS / f"{args.task}.yaml", overrides + (SMOKE if args.smoke else []) + args.overrides)
    wall = None
    run_dir = args.run
    if run_dir is None:
        start = time.perf_counter()
        run_dir = pretrain(config)
        wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = metrics.get("pretext_accuracy")
    table = (
        "| task | backbone | images | epochs | pretrain wall time | images/s | final pretext acc. |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {args.task} | {metrics['backbone']} {config.model.options.get('widths', '')} | {metrics['images_seen']} | "
        f"{metrics['epochs']} | {metrics['train_seconds'] / 60:.1f} min training"
        f"{'' if wall is None else f', {wall / 60:.1f} min wall'} | {metrics['images_per_s']:.0f} | "
        f"{'-' if accuracy is None else f'{100 * accuracy:.1f}%'} |\n\n" + probe_rows(config, run_dir, args.probes)
    )
    print(table)
    if not args.smoke:
        append_results(
            f"{args.task} on Fashion-MNIST: pretraining time and linear probe (benchmarks/pretext_fashion_mnist.py)",
            table + f"\n\nOverrides: {' '.join(args.overrides) or 'none'}; run: {run_dir}",
        )


if __name__ == "__main__":
    main()
