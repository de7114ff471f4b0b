"""Semi-supervised fine-tuning with 1% of the labels: test top-1 against the steps (and CPU minutes) spent.

    python benchmarks/semi_curve.py --run RUNS/exemplar [--steps 300 600 1200] [--seed 0] [--study] [--smoke]

Each budget is its own fine-tuning run (FixMatch, the low-label benchmark's recipe and heads), scored at its
last epoch (``finetune.keep=last``: what the budget buys, not the best of its noisy validation looks) and its
test top-1 measured once; from the pretrained encoder of ``--run`` and from random initialisation. A learning
curve of separate runs, not of one run's checkpoints.

``--study`` also checks the pseudo-labels against the true labels of 2000 pool images at every validated epoch
(``finetune.pseudo_label_accuracy``: outside the training step, never used for training or a choice) and
prints the last check: how many pool images get a confident pseudo-label, how many of those are right, and
how many of all the model's predictions on the pool are right. What limits the consistency loss, measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_main  # noqa: E402
from low_label_cells import finetune_cell  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 600, 1200])
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study", action="store_true", help="check the pseudo-labels against the true labels")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    smoke = ["finetune.batch_size=8", "probe.max_iter=10"] if args.smoke else []
    study = ["finetune.pseudo_label_accuracy=true"] if args.study else []
    columns = ["steps", "start", "test top-1", "validation top-1", "chosen", "fine-tuning minutes"]
    if args.study:
        columns += ["pool confident (study)", "confident right (study)", "predictions right (study)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    cells = []
    for steps in [2] if args.smoke else args.steps:
        for init in ("pretrained", "random"):
            extra = ["finetune.keep=last", *smoke, *study, *args.overrides, f"finetune.steps={steps}"]
            cell = finetune_cell(args.run, args.fraction, args.seed, init, "null", extra, semi="fixmatch")
            cells.append({"steps": steps, "start": init, **dataclasses.asdict(cell)})
            row = [steps, init, f"{cell.test:.2f}%", f"{cell.val:.2f}%", cell.note, f"{cell.minutes:.1f}"]
            if args.study:
                keys = ("pseudo_label_coverage", "pseudo_label_accuracy", "prediction_accuracy")
                row += [f"{cell.study[key]:.1f}%" for key in keys]
            lines.append("| " + " | ".join(str(value) for value in row) + " |")
    body = (
        f"FixMatch fine-tuning with {args.fraction:g} of the labels (seed {args.seed}), encoder {args.run}; "
        "each row a separate run.\n\n" + "\n".join(lines)
    )
    title = "Semi-supervised learning curve (benchmarks/semi_curve.py)"
    report(title, body, args.smoke, {"cells": cells}, args.run / "finetune")


if __name__ == "__main__":
    run_main(main)
