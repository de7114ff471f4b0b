"""Framework overhead: pretraining images/s through ssl-pretrain vs a bare PyTorch loop doing the same work.

    python benchmarks/framework_overhead.py [--tasks dae rotation ...] [--steps 80] [--repeats 2] [--smoke]

Same model, batch, augmentation (the task's own ``make_batch``), loss, optimizer and schedule, same data
in memory; the bare loop is the shortest hand-written version: index a shuffled uint8 tensor, convert,
augment, forward, backward, step. The framework run is ``ssl-pretrain pretrain`` with the shipped config
(progress bar, TensorBoard scalars and image grids, checkpoints as configured) and its ``loop_images_per_s``
(wall time of the whole loop, data loading included). Every measurement runs in a fresh process (in one
long-lived process the later runs were up to 20% slower), alternating bare / framework ``--repeats``
times; the ratio is of the medians. Target: framework >= 0.95x the bare loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import BareStep, report, run_checked, run_main  # noqa: E402

from ssl_pretrain.config import Config, load_config  # noqa: E402
from ssl_pretrain.data import open_split  # noqa: E402
from ssl_pretrain.train.trainer import pretrain  # noqa: E402
from ssl_pretrain.utils.optim import make_scheduler  # noqa: E402

TASKS = ("dae", "rotation", "exemplar", "relative_patch")


def bare_loop(config: Config, steps: int) -> float:
    """Images/s of a hand-written loop over ``steps`` steps (wall time, data included) on ``config.device``,
    in the precision, layout and compilation the trainer would use there (autocast and pinned, non-blocking
    copies on CUDA)."""
    train_step = BareStep.from_config(config)
    device, size = train_step.device, train_step.info.image_size
    dataset = open_split(config.data, "pretrain")
    chosen = train_step.task.select_images(len(dataset), config.seed)
    images = dataset.images if chosen is None else dataset.images[chosen]
    if device.type == "cuda":
        images = images.pin_memory()
    scheduler = make_scheduler(train_step.optimizer, config.trainer, steps)
    batch = config.trainer.batch_size
    order = torch.randperm(len(images))
    train_step.task.train()
    start = time.perf_counter()
    for step in range(steps):
        index = order[(step * batch) % (len(images) - batch) :][:batch]
        x = images[index].to(device, non_blocking=True).float().div_(255)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True).clamp_(0, 1)
        loss = train_step(x, index.to(device))
        scheduler.step()
    loss.item()  # waits for the device
    return steps * batch / (time.perf_counter() - start)


def framework(config_path: str, overrides: list[str], steps: int, out: Path, name: str) -> float:
    run = [f"trainer.max_steps={steps}", f"output_dir={out}", f"run_name={name}"]
    config = load_config(config_path, [*overrides, *run])
    run_dir = pretrain(config)
    return json.loads((run_dir / "metrics.json").read_text())["loop_images_per_s"]


def measure_in_fresh_process(kind: str, task: str, steps: int, overrides: list[str]) -> float:
    command = [sys.executable, __file__, "--measure", kind, "--tasks", task, "--steps", str(steps), *overrides]
    return float(run_checked(command).strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="3 steps, 1 repeat, nothing appended")
    parser.add_argument("--measure", choices=["bare", "framework"], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    steps, repeats = (3, 1) if args.smoke else (args.steps, args.repeats)
    overrides = ["trainer.progress=false", *args.overrides]  # the config's device: auto (CUDA when there is one)
    if args.measure:  # one measurement, in this (fresh) process
        config_path = f"configs/fashion_mnist/{args.tasks[0]}.yaml"
        if args.measure == "bare":
            print(bare_loop(load_config(config_path, overrides), args.steps))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                print(framework(config_path, overrides, args.steps, Path(tmp), "run"))
        return
    rows = ["| task | batch | bare loop img/s | ssl-pretrain img/s | ratio |", "| --- | --- | --- | --- | --- |"]
    for task in args.tasks:
        config = load_config(f"configs/fashion_mnist/{task}.yaml", overrides)
        bare, ours = [], []
        for _ in range(repeats):
            bare.append(measure_in_fresh_process("bare", task, steps, args.overrides))
            ours.append(measure_in_fresh_process("framework", task, steps, args.overrides))
        b, o = statistics.median(bare), statistics.median(ours)
        rows.append(f"| {task} | {config.trainer.batch_size} | {b:.0f} | {o:.0f} | **{o / b:.3f}x** |")
        print(rows[-1], f"(bare {[round(v) for v in bare]}, framework {[round(v) for v in ours]})", flush=True)
    body = "\n".join(rows) + (
        f"\n\n{steps} steps per run, {repeats} alternating runs each, each in a fresh process (median); "
        "images/s = images per wall-clock second of the training loop (data, augmentation, step; the "
        "framework also logs, writes image grids and checkpoints as its shipped config says). Exemplar "
        "counts seed images (each step holds `copies` transformed copies of each).\n"
    )
    report("Framework overhead: ssl-pretrain vs a bare loop (benchmarks/framework_overhead.py)", body, args.smoke)


if __name__ == "__main__":
    run_main(main)
