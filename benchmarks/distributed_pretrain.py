"""Data-parallel pretraining through torchrun vs one process, same global batch, same steps.

    python benchmarks/distributed_pretrain.py [--config CONFIG] [--nproc 2] [--steps 200] [--smoke] [KEY=VALUE ...]

One process trains with ``trainer.batch_size = B`` (all cores to itself); ``--nproc`` processes under
``torchrun --standalone`` train with ``B / nproc`` each (torchrun gives each process one thread on CPU).
Reports images/s of both, whether the replicas ended bit-identical, and how far the two runs' weights
are apart. They are not expected to agree: each process draws its own augmentation parameters (a task
with random inputs sees other inputs than the one-process run) and, with batch norm, normalises its own
share. With deterministic task inputs and ``model.norm=group`` they agree to float rounding; the test
suite checks that (tests/test_distributed.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_checked, run_main  # noqa: E402

from ssl_pretrain.utils.files import safe_torch_load  # noqa: E402


def pretrain(config: str, overrides: list[str], run_dir: Path, nproc: int) -> dict:
    args = ["pretrain", "-c", config, *overrides, f"output_dir={run_dir.parent}", f"run_name={run_dir.name}"]
    if nproc == 1:
        command = [sys.executable, "-m", "ssl_pretrain", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        command += ["-m", "ssl_pretrain", *args]
    run_checked(command)
    return json.loads((run_dir / "metrics.json").read_text())


def max_weight_difference(a: Path, b: Path) -> float:
    first = safe_torch_load(a / "checkpoints" / "last.pt")["model"]
    second = safe_torch_load(b / "checkpoints" / "last.pt")["model"]
    return max(
        float((first[k].double() - second[k].double()).abs().max()) for k in first if first[k].is_floating_point()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/fashion_mnist/rotation.yaml")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--global-batch", type=int, default=128)
    parser.add_argument("--smoke", action="store_true", help="a few steps, nothing appended to RESULTS.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    steps = 4 if args.smoke else args.steps
    common = ["device=cpu", "trainer.progress=false", f"trainer.max_steps={steps}", f"trainer.log_every={steps}"]
    common += [f"trainer.checkpoint_every={steps}", *args.overrides]
    per_process = args.global_batch // args.nproc

    with tempfile.TemporaryDirectory() as tmp:
        single_dir, ddp_dir = Path(tmp) / "single", Path(tmp) / "ddp"
        single = pretrain(args.config, [*common, f"trainer.batch_size={args.global_batch}"], single_dir, 1)
        ddp = pretrain(args.config, [*common, f"trainer.batch_size={per_process}"], ddp_dir, args.nproc)
        difference = max_weight_difference(single_dir, ddp_dir)

    rows = [
        "| launch | processes | batch per process | global batch | steps | images/s | final pretext loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, metrics, batch in (("one process", single, args.global_batch), ("torchrun", ddp, per_process)):
        rows.append(
            f"| {name} | {metrics['processes']} | {batch} | {metrics['global_batch_size']} | {metrics['steps']} | "
            f"{metrics['images_per_s']:.0f} | {metrics['pretext_loss']:.4f} |"
        )
    identical = len(set(ddp["weights_sha256_per_rank"])) == 1
    body = "\n".join(rows) + (
        f"\n\nConfig `{args.config}` {' '.join(args.overrides)}. Throughput ratio torchrun / one process: "
        f"**{ddp['images_per_s'] / single['images_per_s']:.2f}x**. Replicas bit-identical after training: "
        f"{identical}. Largest weight difference between the two runs (different augmentation draws per process, "
        f"so not expected to agree): {difference:.2e}.\n"
    )
    report(
        f"Data-parallel pretraining, {args.nproc} processes vs one (benchmarks/distributed_pretrain.py)",
        body,
        args.smoke,
    )


if __name__ == "__main__":
    run_main(main)
