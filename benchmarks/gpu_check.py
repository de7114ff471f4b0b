"""One command that shows the framework working on a GPU (it prints its own wall time; no GPU has run it yet).

    python benchmarks/gpu_check.py [--steps 300] [--configs dae rotation ...] [--smoke] [KEY=VALUE ...]

Needs, beyond the PyTorch of a GPU image: ``pip install kornia webdataset wids tensorboard tqdm pyyaml pillow
scikit-learn pytest`` and ``pip install -e . --no-deps`` from the repository root (it says which are missing).

1. The CUDA tests: ``pytest -m cuda`` (skipped without a GPU).
2. Every shipped Fashion-MNIST config for ``--steps`` steps in bf16 (``trainer.precision=bf16``; on a CPU
   without native bf16, fp32) with ``trainer.sync_debug=error``: on CUDA PyTorch's sync debug mode raises at
   the first host synchronisation of any step after a process's first, on the CPU the framework's own counter
   does. Its images/s (whole loop, data included) next to a bare PyTorch loop of the same model, batch,
   augmentation and precision (``benchmarks/framework_overhead.py``'s), in the same fresh process, and the
   peak device memory of each.
3. ``torchrun --nproc_per_node=1`` (NCCL on CUDA, gloo on the CPU) of the rotation config, sync-checked too.
4. A linear probe with 1% of the labels (GAP features, ``probe.l2`` by 5-fold cross-validation) of the
   Exemplar run of step 2.

It prints a RESULTS.md entry, and appends it when it ran on CUDA without ``--smoke``. Without a GPU it runs
the same path at toy size (a 2-stage 4-8 wide model, 1024 images, batches of 16, 3 steps): that is its test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, report, run_checked, run_main, shipped_configs  # noqa: E402
from framework_overhead import bare_loop  # noqa: E402

import ssl_pretrain as ssl  # noqa: E402
from ssl_pretrain.utils.precision import cpu_has_native_bf16  # noqa: E402

CONFIGS = REPO / "configs" / "fashion_mnist"
SHIPPED = shipped_configs()
NEEDED = ["kornia", "webdataset", "wids", "tensorboard", "tqdm", "yaml", "PIL", "sklearn", "pytest"]
TOY = ["model.widths=[4,8]", "model.blocks=[1,1]", "data.limit=1024", "trainer.batch_size=16"]
PROBE = ["data.label_fraction=0.01", "probe.l2=[1e-4,1e-3,1e-2]", "evaluation.val_folds=5", "trainer.progress=false"]


def missing_packages() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def on_cuda(overrides: list[str]) -> bool:
    """Whether the runs go to a GPU: there is one and ``device=cpu`` was not asked for."""
    return torch.cuda.is_available() and "device=cpu" not in overrides


def check_precision(cuda: bool) -> str:
    return "bf16" if cuda or cpu_has_native_bf16() else "fp32"


def cuda_tests() -> str:
    """The last line of ``pytest -m cuda`` (every test that needs a GPU)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests"], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    lines = done.stdout.strip().splitlines() or ["(no output)"]
    if done.returncode not in (0, 5):  # 5: every test deselected or skipped
        print(done.stdout[-4000:], file=sys.stderr)
    return lines[-1]


def measure(config: str, steps: int, out: Path, overrides: list[str]) -> dict:
    """In this (fresh) process: the bare loop, then ``ssl-pretrain pretrain`` with the sync check."""
    path = CONFIGS / f"{config}.yaml"
    bare_config = ssl.load_config(path, overrides)
    cuda = on_cuda(overrides)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    bare = bare_loop(bare_config, steps)
    bare_memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    extra = [f"trainer.max_steps={steps}", f"output_dir={out}", f"run_name={config}", "trainer.sync_debug=error"]
    run = ssl.pretrain(path, [*overrides, *extra])
    metrics = run.metrics
    return {
        "bare": bare,
        "framework": metrics["loop_images_per_s"],
        "precision": metrics["precision"],
        "syncs": sum(sum(counts.values()) for counts in metrics["step_host_syncs_per_rank"]),
        "checked_steps": metrics["sync_checked_steps"],
        "bare_memory_mb": bare_memory,
        "memory_mb": metrics["peak_memory_mb"],
    }


def measure_in_fresh_process(config: str, steps: int, out: Path, overrides: list[str]) -> dict:
    command = [sys.executable, __file__, "--measure", config, "--steps", str(steps), "--out", str(out), *overrides]
    return json.loads(run_checked(command).strip().splitlines()[-1])


def torchrun_check(out: Path, steps: int, overrides: list[str]) -> str:
    """``torchrun --nproc_per_node=1`` pretraining rotation; one line saying how it went."""
    args = ["pretrain", "-c", str(CONFIGS / "rotation.yaml"), f"trainer.max_steps={steps}", f"output_dir={out}"]
    args += ["run_name=torchrun", "trainer.sync_debug=error", *overrides]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    start = time.perf_counter()
    run_checked([*launcher, "-m", "ssl_pretrain", *args])
    metrics = json.loads((out / "torchrun" / "metrics.json").read_text())
    backend = "NCCL" if on_cuda(overrides) else "gloo"
    syncs = sum(sum(counts.values()) for counts in metrics["step_host_syncs_per_rank"])
    return (
        f"torchrun --nproc_per_node=1 ({backend}): {metrics['steps']} steps, {metrics['images_per_s']:.0f} images/s, "
        f"{syncs} host synchronisations in {metrics['sync_checked_steps']} checked steps, "
        f"{time.perf_counter() - start:.0f} s with start-up"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--configs", nargs="+", default=SHIPPED, choices=SHIPPED, help="exemplar is probed")
    parser.add_argument("--smoke", action="store_true", help="toy size, nothing appended (what runs without a GPU)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cuda = on_cuda(args.overrides)
    toy = args.smoke or not cuda
    overrides = ["trainer.progress=false", f"trainer.precision={check_precision(cuda)}", *(TOY if toy else [])]
    overrides += args.overrides
    steps = 3 if toy else args.steps
    if args.measure:
        print(json.dumps(measure(args.measure, steps, Path(args.out), overrides)))
        return
    started = time.perf_counter()
    missing = missing_packages()
    if missing:
        raise SystemExit(f"gpu_check: missing packages: {' '.join(missing)} (pip install them, see the docstring)")
    out = Path(tempfile.mkdtemp(prefix="ssl_gpu_check_"))
    tests = cuda_tests()
    print(f"CUDA tests: {tests}", flush=True)
    rows = ["| config | precision | bare loop img/s | ssl-pretrain img/s | ratio | host syncs (checked steps) | "
            "peak memory bare / ssl-pretrain (MiB) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    ratios = {}
    for config in args.configs:
        m = measure_in_fresh_process(config, steps, out, overrides)
        ratios[config] = m["framework"] / m["bare"]
        rows.append(
            f"| {config} | {m['precision']} | {m['bare']:.0f} | {m['framework']:.0f} | **{ratios[config]:.3f}x** | "
            f"{m['syncs']} ({m['checked_steps']}) | {m['bare_memory_mb']:.0f} / {m['memory_mb']:.0f} |"
        )
        print(f"measured {config}: {m}", flush=True)
    launched = torchrun_check(out, steps, overrides)
    print(launched, flush=True)
    probed = "exemplar" if "exemplar" in args.configs else args.configs[0]
    probe = ssl.probe(out / probed, [*PROBE, *(["evaluation.val_folds=2"] if toy else [])])
    device = torch.cuda.get_device_name(0) if cuda else "CPU (toy size)"
    worst = min(ratios, key=ratios.get)
    body = "\n".join(rows) + (
        f"\n\n- Device: {device}. CUDA tests (`pytest -m cuda`): {tests}\n- {launched}\n"
        f"- 1%-label GAP probe of the {probed} run ({steps} steps): {probe.test_top1('pretrained'):.2f}% test top-1\n"
        f"- {steps} steps per config, `trainer.sync_debug=error` (every step after a process's first checked); "
        f"images/s of the whole loop, data included; lowest ratio {worst} {ratios[worst]:.3f}x "
        f"(target >= 0.95x: {'met' if ratios[worst] >= 0.95 else 'missed'}).\n"
        f"- Wall time of the check: {(time.perf_counter() - started) / 60:.1f} min."
    )
    report("GPU check (benchmarks/gpu_check.py)", body, toy)


if __name__ == "__main__":
    run_main(main)
