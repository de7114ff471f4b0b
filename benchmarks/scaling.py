"""Scaling: time per epoch as the dataset grows, images/s as the batch grows, and peak memory per run.

    python benchmarks/scaling.py [--task rotation] [--sizes 10000 30000 60000] [--batches 32 64 128 256]
                                 [--batch-steps 40] [--smoke] [KEY=VALUE ...]

Every point is a fresh ``ssl-pretrain pretrain`` process (so each peak is its own): one epoch over the
first N Fashion-MNIST training images (``data.limit``), then ``--batch-steps`` steps per batch size on the
whole set. Reported from each run's ``metrics.json``: loop time (data, augmentation, steps, logging,
checkpoints), images/s and ``peak_memory_mb`` (peak resident set size on CPU, ``max_memory_allocated`` on
CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_checked, run_main  # noqa: E402


def run(config: str, overrides: list[str], out: Path, name: str) -> dict:
    args = ["pretrain", "-c", config, *overrides, f"output_dir={out}", f"run_name={name}", "trainer.progress=false"]
    run_checked([sys.executable, "-m", "ssl_pretrain", *args])
    return json.loads((out / name / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="rotation")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 60000])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--batch-steps", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, nothing appended")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    sizes, batches, batch_steps = ([64], [8, 16], 2) if args.smoke else (args.sizes, args.batches, args.batch_steps)
    config = f"configs/fashion_mnist/{args.task}.yaml"
    common = ["trainer.epochs=1", "trainer.max_steps=null", *args.overrides]
    epoch_rows = [
        "| images | epoch time (s) | images/s | peak memory (MB) |",
        "| --- | --- | --- | --- |",
    ]
    batch_rows = [
        "| batch | steps | images/s | ms per step | peak memory (MB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            m = run(config, [*common, f"data.limit={n}"], Path(tmp), f"size{n}")
            epoch_rows.append(
                f"| {n} | {m['loop_seconds']:.1f} | {m['loop_images_per_s']:.0f} | {m['peak_memory_mb']:.0f} |"
            )
            print(epoch_rows[-1], flush=True)
        for b in batches:
            overrides = [*common, f"trainer.batch_size={b}", f"trainer.max_steps={batch_steps}"]
            m = run(config, overrides, Path(tmp), f"batch{b}")
            per_step = 1000 * m["loop_seconds"] / m["steps"]
            batch_rows.append(
                f"| {b} | {m['steps']} | {m['loop_images_per_s']:.0f} | {per_step:.0f} | {m['peak_memory_mb']:.0f} |"
            )
            print(batch_rows[-1], flush=True)
    body = (
        f"Task `{args.task}` (shipped config), one epoch per dataset size:\n\n"
        + "\n".join(epoch_rows)
        + f"\n\nBatch sizes, {batch_steps} steps each on the whole set:\n\n"
        + "\n".join(batch_rows)
        + "\n"
    )
    report("Scaling with dataset size and batch size (benchmarks/scaling.py)", body, args.smoke)


if __name__ == "__main__":
    run_main(main)
