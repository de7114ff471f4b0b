"""The README's main job, end to end: ``ssl-pretrain demo`` in a fresh process, its figure and its time.

    python benchmarks/demo_run.py [--smoke] [KEY=VALUE ...]

Runs the command as a user would (its own run directory under a temporary output folder) and appends the
lines it printed after training, with the wall time, to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_captured, run_main  # noqa: E402

SMOKE = [
    "trainer.max_steps=2",
    "data.limit=256",
    "evaluation.train_limit=200",
    "model.widths=[4,8]",
    "model.blocks=[1,1]",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="ssl_demo_")
    overrides = [f"output_dir={out}", "trainer.progress=false", *(SMOKE if args.smoke else []), *args.overrides]
    start = time.perf_counter()
    done = run_captured([sys.executable, "-m", "ssl_pretrain", "demo", *overrides])
    minutes = (time.perf_counter() - start) / 60
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    figure = next(line for line in lines if line.startswith("DAE-pretrained encoder:"))
    paths = [line for line in done.stdout.splitlines() if ": precision: " in line]  # which numeric path ran
    body = "```\n" + "\n".join(lines[-8:]) + "\n```\n\n" + f"{figure}\n\nWall time, start to end: {minutes:.1f} min."
    body += "".join(f"\n\n{line}" for line in paths)
    report("The README's main job: ssl-pretrain demo (benchmarks/demo_run.py)", body, args.smoke)


if __name__ == "__main__":
    run_main(main)
