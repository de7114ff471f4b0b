"""Semi-supervised fine-tuning with 1% of the labels: test top-1 against the steps (and CPU minutes) spent.

    python benchmarks/semi_curve.py --run RUNS/exemplar [--steps 300 600 1200] [--seed 0] [--smoke]

Each budget is its own fine-tuning run (FixMatch, the low-label benchmark's recipe and heads), scored at its
last epoch (``finetune.keep=last``: what the budget buys, not the best of its noisy validation looks) and its
test top-1 measured once; from the pretrained encoder of ``--run`` and from random initialisation. A learning
curve of separate runs, not of one run's checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402
from low_label import finetune_cell  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 600, 1200])
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    smoke = ["finetune.batch_size=8", "probe.max_iter=10"] if args.smoke else []
    lines = [
        "| steps | start | test top-1 | validation top-1 | chosen | fine-tuning minutes |",
        "|---|---|---|---|---|---|",
    ]
    for steps in [2] if args.smoke else args.steps:
        for init in ("pretrained", "random"):
            extra = ["finetune.keep=last", *smoke, *args.overrides, f"finetune.steps={steps}"]
            cell = finetune_cell(args.run, args.fraction, args.seed, init, "null", extra, semi=True)
            lines.append(
                f"| {steps} | {init} | {cell.test:.2f}% | {cell.val:.2f}% | {cell.note} | {cell.minutes:.1f} |"
            )
    body = (
        f"FixMatch fine-tuning with {args.fraction:g} of the labels (seed {args.seed}), encoder {args.run}; "
        "each row a separate run.\n\n" + "\n".join(lines)
    )
    report("Semi-supervised learning curve (benchmarks/semi_curve.py)", body, args.smoke)


if __name__ == "__main__":
    main()
