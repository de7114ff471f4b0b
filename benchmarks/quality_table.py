"""The quality table: every pretext task's shipped config on Fashion-MNIST, side by side with controls.

    python benchmarks/quality_table.py [--runs DIR] [--tasks dae rotation ...] [--label-fraction 0.1]
                                       [--smoke] [KEY=VALUE ...]

For each task: pretrain ``configs/fashion_mnist/<task>.yaml`` on the 60k training images without labels
(a finished run already in ``--runs DIR/<task>`` is reused, its own timing reported), then the
last-layer linear probe (global average pooling of the last stage), the best layer of the multi-layer
probe, kNN, and fine-tuning on a fraction of the labels. Controls in the same table: raw-pixel
logistic regression and kNN, the randomly initialised encoder of the same architecture (probes, kNN,
and its fine-tuning = supervised training from scratch on the same labels), and supervised training
from scratch on all the labels. Every figure comes from the framework's own commands; the JSON each
writes stays in the run directories. ``--smoke`` shrinks every budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_results, run_config  # noqa: E402

from ssl_pretrain.config import load_config  # noqa: E402
from ssl_pretrain.evaluation.finetune import run_finetune  # noqa: E402
from ssl_pretrain.evaluation.knn import run_knn  # noqa: E402
from ssl_pretrain.evaluation.probe import run_probe  # noqa: E402
from ssl_pretrain.train.trainer import pretrain  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
TASKS = ["dae", "rotation", "exemplar", "relative_patch"]
SMOKE_PRETRAIN = ["data.limit=256", "trainer.max_steps=3", "trainer.batch_size=32"]
SMOKE_EVAL = ["probe.train_limit=300", "probe.max_iter=10", "probe.layer_dim=256", "finetune.epochs=1"]


def pretrained_run(task: str, runs: Path, overrides: list[str]) -> tuple[Path, str]:
    """The run directory of ``task`` (pretrained now unless a finished run is there) and how it came."""
    run = runs / task
    if not (run / "metrics.json").is_file():
        config = load_config(
            CONFIGS / f"{task}.yaml", [f"output_dir={runs}", f"run_name={task}", "trainer.progress=false", *overrides]
        )
        pretrain(config)
        return run, "pretrained now"
    return run, "reused"


def frozen_rows(run: Path, controls: str, overrides: list[str]) -> tuple[dict, dict]:
    """``{encoder: [probe rows]}`` of the multi-layer probe and ``{encoder: kNN row}`` (GAP features)."""
    probe = run_probe(run_config(run, ["probe.layers=all", f"probe.control={controls}", *overrides]))
    knn = run_knn(run_config(run, [f"probe.control={controls}", *overrides]))
    layers: dict[str, list[dict]] = {}
    for row in probe["results"]:
        layers.setdefault(row["encoder"], []).append(row)
    return layers, {row["encoder"]: row for row in knn["results"]}


def finetune_top1(run: Path, fraction: float, init: str, overrides: list[str]) -> tuple[float, float]:
    """Test top-1 (at the best validation epoch) and minutes of fine-tuning on ``fraction`` of the labels."""
    name = f"quality-labels{fraction:g}-{init}-{int(time.time())}"
    report = run_finetune(
        run_config(
            run, [f"data.label_fraction={fraction}", f"finetune.init={init}", f"finetune.name={name}", *overrides]
        )
    )
    return report["test_top1_best"], report["train_seconds"] / 60


def last_and_best(rows: list[dict]) -> tuple[dict, dict]:
    """The last-layer (GAP; pixels for the raw control) row and the best row of a multi-layer probe."""
    return next(r for r in rows if r["layer"] in ("pooled", "pixels")), max(rows, key=lambda r: r["top1"])


def pretraining_cell(run: Path, how: str) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = metrics.get("pretext_accuracy")
    return (
        f"{metrics['train_seconds'] / 60:.1f} min, {metrics['images_seen']} images"
        + ("" if accuracy is None else f", pretext acc. {100 * accuracy:.1f}%")
        + ("" if how == "pretrained now" else " (reused run)")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, help="where the pretraining runs go (finished ones are reused)")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="ssl_quality_"))
    pretrain_overrides = (SMOKE_PRETRAIN if args.smoke else []) + args.overrides
    eval_overrides = (SMOKE_EVAL if args.smoke else []) + args.overrides
    fraction = args.label_fraction
    start = time.perf_counter()

    header = (
        "| encoder | pretraining | linear probe, last layer (GAP) | linear probe, best layer | kNN (k=20, GAP) "
        f"| fine-tuning, {fraction:g} of the labels |\n|---|---|---|---|---|---|"
    )
    lines, controls, last_probe, best_probe = [header], {}, {}, {}
    for i, task in enumerate(args.tasks):
        run, how = pretrained_run(task, runs, pretrain_overrides)
        # The controls do not depend on the task (same architecture, seed and 28 px input): once.
        layers, knn = frozen_rows(run, "all" if i == 0 else "none", eval_overrides)
        if i == 0:
            controls = {"layers": layers, "knn": knn, "run": run}
        last_probe[task], best_probe[task] = last, best = last_and_best(layers["pretrained"])
        tuned, minutes = finetune_top1(run, fraction, "pretrained", eval_overrides)
        lines.append(
            f"| {task} | {pretraining_cell(run, how)} | **{last['top1']:.2f}%** | {best['top1']:.2f}% "
            f"({best['layer']}) | {knn['pretrained']['top1']:.2f}% | {tuned:.2f}% ({minutes:.1f} min) |"
        )

    run = controls["run"]
    scratch_few, minutes_few = finetune_top1(run, fraction, "random", eval_overrides)
    scratch_all, minutes_all = finetune_top1(run, 1.0, "random", eval_overrides)
    random_last, random_best = last_and_best(controls["layers"]["random_init"])
    raw, _ = last_and_best(controls["layers"]["raw_pixels"])
    lines += [
        f"| random init (control) | none | {random_last['top1']:.2f}% | {random_best['top1']:.2f}% "
        f"({random_best['layer']}) | "
        f"{controls['knn']['random_init']['top1']:.2f}% | {scratch_few:.2f}% ({minutes_few:.1f} min; "
        "= supervised from scratch) |",
        f"| raw pixels (control) | none | {raw['top1']:.2f}% (logistic regression) | - | "
        f"{controls['knn']['raw_pixels']['top1']:.2f}% | - |",
        f"| supervised from scratch, all labels (control) | none | - | - | - | {scratch_all:.2f}% "
        f"({minutes_all:.1f} min, all labels) |",
    ]

    margins = {task: row["top1"] - random_last["top1"] for task, row in last_probe.items()}
    best_margins = {task: row["top1"] - random_best["top1"] for task, row in best_probe.items()}
    best_last = max(last_probe, key=lambda task: last_probe[task]["top1"])
    best_any = max(best_probe, key=lambda task: best_probe[task]["top1"])
    verdict = (
        "Every task beats the random-init encoder on the last-layer probe: "
        f"{'yes' if min(margins.values()) > 0 else 'no'} ("
        + ", ".join(f"{task} {margin:+.2f}" for task, margin in margins.items())
        + " points); on the best layer: "
        + ", ".join(f"{task} {margin:+.2f}" for task, margin in best_margins.items())
        + f" points. Best linear probe: last layer {best_last} {last_probe[best_last]['top1']:.2f}%, any layer "
        f"{best_any} {best_probe[best_any]['top1']:.2f}% ({best_probe[best_any]['layer']})."
    )
    body = "\n".join(lines) + f"\n\n{verdict}\n\nWhole table: {(time.perf_counter() - start) / 60:.1f} min."
    print(body)
    if not args.smoke:
        append_results(
            "Quality table on Fashion-MNIST (benchmarks/quality_table.py)",
            body + f"\n\nRuns: {runs}; overrides: {' '.join(args.overrides) or 'none'}",
        )


if __name__ == "__main__":
    main()
