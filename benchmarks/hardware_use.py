"""Hardware use: achieved FLOP/s of the pretraining step against this machine's measured matmul peak
(the step runs in the trainer's precision, ``trainer.precision=auto`` unless overridden, and the peak is
measured in that dtype: bf16 on a CPU with native bf16 or a recent GPU, fp32 on other CPUs).

    python benchmarks/hardware_use.py [--tasks dae rotation ...] [--steps 10] [--smoke] [KEY=VALUE ...]

FLOPs of one step (forward + backward of the task's model; augmentation and optimizer are not counted)
come from ``torch.utils.flop_counter.FlopCounterMode``. The step is timed as the trainer runs it: on-device
augmentation, forward, loss, backward, optimizer step, in the shipped config's layout and batch size.
The peak is the best of square matmuls of side 1024, 2048 and 4096. Each task runs in a fresh process.
Target: >= 60% of the peak for the default Fashion-MNIST encoder at its default batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from common import BareStep, report, run_checked, run_main, sync  # noqa: E402

from ssl_pretrain.build import resolve_device  # noqa: E402
from ssl_pretrain.config import load_config  # noqa: E402
from ssl_pretrain.utils.precision import resolve_precision  # noqa: E402

TASKS = ("dae", "rotation", "exemplar", "relative_patch")


def matmul_peak(device: torch.device, dtype: torch.dtype, sides=(1024, 2048, 4096), repeats: int = 5) -> float:
    """Best square matmul rate in FLOP/s, in the dtype the training step computes in."""
    best = 0.0
    for n in sides:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def step_rate(task_name: str, overrides: list[str], steps: int) -> dict:
    """FLOPs of one training step and its measured time (after 3 warm-up steps)."""
    # FLOPs are counted in eager mode: the step runs uncompiled whatever trainer.compile says.
    config = load_config(f"configs/fashion_mnist/{task_name}.yaml", [*overrides, "trainer.compile=false"])
    train_step = BareStep.from_config(config)
    device, info, batch = train_step.device, train_step.info, config.trainer.batch_size
    images = torch.rand(batch, info.channels, info.image_size, info.image_size, device=device)
    indices = torch.arange(batch, device=device)

    def step() -> None:
        train_step(images, indices)

    with FlopCounterMode(display=False) as counter:
        step()
    for _ in range(3):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {
        "flops": counter.get_total_flops(),
        "seconds": seconds,
        "batch": batch,
        "channels_last": train_step.channels_last,
        "precision": train_step.precision.name,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="1 timed step, nothing appended")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    steps = 1 if args.smoke else args.steps
    overrides = args.overrides  # the config's device: auto (CUDA when there is one)
    if args.one:
        print(json.dumps(step_rate(args.tasks[0], overrides, steps)))
        return
    config = load_config(f"configs/fashion_mnist/{args.tasks[0]}.yaml", overrides)
    device = resolve_device(config.device)
    precision = resolve_precision(config.trainer.precision, device, warn=False)
    dtype = precision.dtype or torch.float32
    peak = matmul_peak(device, dtype, (256, 512) if args.smoke else (1024, 2048, 4096))
    rows = [
        "| task | batch | GFLOP per step | ms per step | GFLOP/s | share of matmul peak |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for task in args.tasks:
        command = [sys.executable, __file__, "--one", "--tasks", task, "--steps", str(steps), *args.overrides]
        r = json.loads(run_checked(command).strip().splitlines()[-1])
        rate = r["flops"] / r["seconds"]
        rows.append(
            f"| {task} | {r['batch']} | {r['flops'] / 1e9:.2f} | {1000 * r['seconds']:.0f} | {rate / 1e9:.1f} | "
            f"**{100 * rate / peak:.0f}%** |"
        )
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (
        f"\n\nMeasured {precision.name} matmul peak: {peak / 1e9:.0f} GFLOP/s ({device}; steps in "
        f"{precision.name}). Shipped configs (small_resnet "
        f"32-64-128 at 28 px; relative patch at 48 px), {steps} timed steps after 3 warm-up steps.\n"
    )
    report("Hardware use: FLOP/s of the pretraining step vs matmul peak (benchmarks/hardware_use.py)", body, args.smoke)


if __name__ == "__main__":
    run_main(main)
