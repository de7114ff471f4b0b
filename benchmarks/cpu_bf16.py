"""bf16 autocast against fp32 on this CPU: pretraining speed of every shipped config, and what it costs in quality.

    python benchmarks/cpu_bf16.py speed [--configs dae rotation ...] [--steps 30] [--rounds 2] [--smoke]
    python benchmarks/cpu_bf16.py quality [--config rotation] [--seeds 3] [--runs DIR] [--smoke]

``speed``: images/s of the real trainer (``ssl-pretrain pretrain``, the shipped Fashion-MNIST config with only
``trainer.max_steps`` and ``trainer.precision`` changed) in fp32 and in bf16, each measurement a fresh
process, the two precisions alternating (fp32 first in odd rounds, bf16 first in even ones) so that a drift of
the machine falls on both; the ratio is of the medians over rounds. Targets: bf16 >= 1.4x fp32 for every
config where the CPU has native bf16 (what ``trainer.precision=auto`` then picks).

``quality``: one shipped config pretrained in full both ways (same seed and steps), each encoder then probed
the same way, in fp32: the GAP linear probe with 1% of the labels (600 images), ``probe.l2`` chosen by 5-fold
cross-validation, for ``--seeds`` label samples. The bf16 encoder passes when its mean is within the seeds'
spread (the larger standard deviation of the two) of the fp32 encoder's.

Both say which numeric path this CPU takes (``describe_precision``): on a CPU without native bf16 the same
figures show what emulated bf16 would cost, and ``auto`` runs fp32 there.
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

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, report, run_checked, run_main, shipped_configs  # noqa: E402

import ssl_pretrain as ssl  # noqa: E402
from ssl_pretrain.utils.precision import cpu_has_native_bf16, describe_precision  # noqa: E402

CONFIGS = REPO / "configs" / "fashion_mnist"
SHIPPED = shipped_configs()
PRECISIONS = ("fp32", "bf16")
SMOKE = ["model.widths=[4,8]", "model.blocks=[1,1]", "trainer.batch_size=8", "data.limit=256"]
PROBE = ["data.label_fraction=0.01", "probe.l2=[1e-4,1e-3,1e-2]", "evaluation.val_folds=5",
         "evaluation.control=none", "trainer.precision=fp32", "trainer.progress=false"]  # fmt: skip


def path_line() -> str:
    cpu = torch.device("cpu")
    native = cpu_has_native_bf16()
    return (
        f"This CPU {'has' if native else 'has no'} native bf16 (AVX512-BF16 or AMX, as PyTorch reports them); "
        f"`trainer.precision=auto` here: {describe_precision('auto', cpu)}."
    )


def images_per_s(config: str, precision: str, steps: int, extra: list[str]) -> float:
    """Steps' images/s (``metrics.json``'s ``images_per_s``) of one fresh ``ssl-pretrain pretrain`` process."""
    out = tempfile.mkdtemp(prefix="ssl_bf16_")
    args = ["pretrain", "-c", str(CONFIGS / f"{config}.yaml"), f"trainer.max_steps={steps}", "device=cpu"]
    args += [f"trainer.precision={precision}", "trainer.progress=false", f"output_dir={out}", "run_name=run"]
    args += ["trainer.checkpoint_every=100000", *extra]
    run_checked([sys.executable, "-m", "ssl_pretrain", *args])
    metrics = json.loads((Path(out) / "run" / "metrics.json").read_text())
    assert metrics["precision"] == precision, metrics["precision"]
    return metrics["images_per_s"]


def speed(args) -> None:
    print(path_line(), flush=True)
    extra = SMOKE if args.smoke else []
    steps = 3 if args.smoke else args.steps
    rows = ["| config | fp32 images/s | bf16 images/s | bf16 / fp32 | rounds |", "|---|---|---|---|---|"]
    ratios = {}
    for config in args.configs:
        rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for round_ in range(args.rounds):
            for precision in PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]:
                rates[precision].append(images_per_s(config, precision, steps, extra + args.overrides))
                print(f"{config} {precision}: {rates[precision][-1]:.1f} images/s", flush=True)
        fp32, bf16 = (statistics.median(rates[p]) for p in PRECISIONS)
        ratios[config] = bf16 / fp32
        rows.append(f"| {config} | {fp32:.1f} | {bf16:.1f} | **{bf16 / fp32:.2f}x** | {args.rounds} |")
    worst = min(ratios, key=ratios.get)
    verdict = "met" if ratios[worst] >= 1.4 else "missed"
    body = "\n".join(rows) + (
        f"\n\n{path_line()} Each figure: the median over rounds of one fresh `ssl-pretrain pretrain` process of "
        f"{steps} steps (`metrics.json` `images_per_s`: the steps' images over their time, data loading excluded), "
        f"the precisions alternating. Lowest ratio: {worst}, {ratios[worst]:.2f}x (target >= 1.4x: {verdict})."
    )
    report("bf16 autocast against fp32 on the CPU: pretraining speed (benchmarks/cpu_bf16.py speed)", body, args.smoke)


def pretrain_both(config: str, runs: Path, extra: list[str]) -> dict[str, tuple[Path, float]]:
    """``{precision: (run directory, pretraining minutes)}``, a finished run in ``runs`` reused."""
    done = {}
    for precision in PRECISIONS:
        name = f"{config}-{precision}"
        if not (runs / name / "metrics.json").is_file():
            overrides = [f"output_dir={runs}", f"run_name={name}", f"trainer.precision={precision}", "device=cpu"]
            ssl.pretrain(CONFIGS / f"{config}.yaml", [*overrides, "trainer.progress=false", *extra])
        metrics = json.loads((runs / name / "metrics.json").read_text())
        done[precision] = runs / name, metrics["loop_seconds"] / 60
    return done


def gap_probe(run: Path, seed: int, extra: list[str]) -> float:
    """Test top-1 of the GAP probe with 1% of the labels, label sample ``seed`` (``l2`` chosen by 5-fold CV)."""
    report_ = ssl.probe(run, [*PROBE, f"seed={seed}", *extra])
    return report_.test_top1("pretrained")


def quality(args) -> None:
    print(path_line(), flush=True)
    runs = Path(args.runs or tempfile.mkdtemp(prefix="ssl_bf16_runs_"))
    extra = SMOKE if args.smoke else []
    probe_extra = ["data.limit=256", "evaluation.val_folds=2"] if args.smoke else []
    started = time.perf_counter()
    done = pretrain_both(args.config, runs, extra + args.overrides)
    seeds = " | ".join(f"label seed {s}" for s in range(args.seeds))
    rows = [f"| pretrained in | minutes | {seeds} | mean +- std |", "|---" * (args.seeds + 3) + "|"]
    scores = {}
    for precision, (run, minutes) in done.items():
        scores[precision] = [gap_probe(run, seed, probe_extra) for seed in range(args.seeds)]
        cells = " | ".join(f"{s:.2f}%" for s in scores[precision])
        spread = statistics.stdev(scores[precision]) if args.seeds > 1 else 0.0
        rows.append(
            f"| {precision} | {minutes:.1f} | {cells} | {statistics.mean(scores[precision]):.2f} +- {spread:.2f}% |"
        )
    gap = statistics.mean(scores["bf16"]) - statistics.mean(scores["fp32"])
    spread = max(statistics.stdev(s) for s in scores.values()) if args.seeds > 1 else 0.0
    verdict = "within" if abs(gap) <= spread else "outside"
    body = "\n".join(rows) + (
        f"\n\n{path_line()} `configs/fashion_mnist/{args.config}.yaml` pretrained in full in each precision (same "
        f"seed, steps and data order; minutes of the whole training loop, one process at a time), then probed "
        f"alike in fp32: GAP linear probe, 1% of the labels, `probe.l2` by 5-fold cross-validation, Fashion-MNIST "
        f"test top-1. bf16 - fp32: {gap:+.2f} points, {verdict} the seeds' spread ({spread:.2f}). "
        f"Wall time of this benchmark: {(time.perf_counter() - started) / 60:.1f} min."
    )
    report(f"bf16 autocast against fp32 on the CPU: quality of {args.config} (benchmarks/cpu_bf16.py quality)",
           body, args.smoke)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fast = commands.add_parser("speed")
    fast.add_argument("--configs", nargs="+", default=SHIPPED, choices=SHIPPED)
    fast.add_argument("--steps", type=int, default=30)
    fast.add_argument("--rounds", type=int, default=2)
    good = commands.add_parser("quality")
    good.add_argument("--config", default="rotation", choices=SHIPPED)
    good.add_argument("--seeds", type=int, default=3)
    good.add_argument("--runs", help="where the two runs go (a finished run there is reused)")
    for sub in (fast, good):
        sub.add_argument("--smoke", action="store_true")
        sub.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    speed(args) if args.command == "speed" else quality(args)


if __name__ == "__main__":
    run_main(main)
