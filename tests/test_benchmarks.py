"""The benchmark scripts' --smoke modes, so they do not rot (their figures come from full runs)."""

import subprocess
import sys

import pytest


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("task", ["dae", "rotation", "exemplar", "relative_patch"])
def test_pretext_benchmark_smoke(task, fashion_mnist_root, tmp_path):
    done = _run(
        "benchmarks/pretext_fashion_mnist.py",
        "--task",
        task,
        "--smoke",
        f"data.root={fashion_mnist_root}",
        "data.download=false",
        "model.widths=[4,8]",
        "model.blocks=[1,1]",
        "task.copies=2" if task == "exemplar" else "seed=0",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith(f"| {task} | small_resnet") for line in lines)
    assert lines[-1].startswith("| `probe.pool=1` | pooled | 8 |") and lines[-1].count("%") == 3


def test_relative_patch_encoding_benchmark_smoke():
    done = _run("benchmarks/relative_patch_encoding.py", "--smoke")
    assert done.returncode == 0, done.stderr
    assert "| naive pair-wise | 16 |" in done.stdout and "Same logits in eval mode: True" in done.stdout


def test_evaluation_suite_benchmark_smoke(fashion_mnist_root, tmp_path):
    from ssl_pretrain.cli import main

    from .conftest import TINY

    args = [
        "pretrain",
        "-c",
        "configs/fashion_mnist/rotation.yaml",
        *TINY,
        f"data.root={fashion_mnist_root}",
        "data.download=false",
        f"output_dir={tmp_path}",
        "run_name=tiny",
    ]
    assert main(args) == 0
    done = _run("benchmarks/evaluation_suite.py", "--run", str(tmp_path / "tiny"), "--smoke", "--label-fraction", "0.5")
    assert done.returncode == 0, done.stderr
    assert "| layer2 | average pooling to" in done.stdout and "kNN (k=20" in done.stdout
    starts = [
        line.split(" | ")[:2]
        for line in done.stdout.splitlines()
        if line.startswith("| pretrained |") or line.startswith("| random |")
    ]
    assert [(s[0], s[1].split(" ")[0]) for s in starts] == [
        ("| pretrained", "full"),
        ("| random", "full"),
        ("| pretrained", "head_only"),
    ]


def test_probe_speed_benchmark_smoke(fashion_mnist_root, tmp_path):
    from ssl_pretrain.cli import main

    from .conftest import TINY

    args = [
        "pretrain",
        "-c",
        "configs/fashion_mnist/dae.yaml",
        *TINY,
        f"data.root={fashion_mnist_root}",
        "data.download=false",
        f"output_dir={tmp_path}",
        "run_name=tiny",
    ]
    assert main(args) == 0
    done = _run("benchmarks/probe_speed.py", "--run", str(tmp_path / "tiny"), "--smoke")
    assert done.returncode == 0, done.stderr
    assert "64 x 32 training features" in done.stdout  # widths [4, 8]: 8 channels pooled to 2x2
    assert "| scikit-learn LogisticRegression (lbfgs" in done.stdout and "Speed-up: **" in done.stdout


def test_distributed_pretrain_benchmark_smoke(fashion_mnist_root):
    done = _run(
        "benchmarks/distributed_pretrain.py",
        "--smoke",
        "--global-batch",
        "8",
        f"data.root={fashion_mnist_root}",
        "data.download=false",
        "model.widths=[4,8]",
        "model.blocks=[1,1]",
    )
    assert done.returncode == 0, done.stderr
    assert "| one process | 1 | 8 | 8 | 4 |" in done.stdout and "| torchrun | 2 | 4 | 8 | 4 |" in done.stdout
    assert "Replicas bit-identical after training: True" in done.stdout


def _tiny_fashion_mnist(root) -> list[str]:
    return [f"data.root={root}", "data.download=false", "model.widths=[4,8]", "model.blocks=[1,1]"]


def test_framework_overhead_benchmark_smoke(fashion_mnist_root):
    done = _run(
        "benchmarks/framework_overhead.py", "--smoke", "--tasks=rotation", *_tiny_fashion_mnist(fashion_mnist_root)
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| rotation | 128 |"))
    bare, ours, ratio = (float(cell.strip(" *x")) for cell in row.split("|")[3:6])
    assert bare > 0 and ours > 0 and abs(ratio - ours / bare) < 0.01


def test_augmentation_speed_benchmark_smoke():
    done = _run("benchmarks/augmentation_speed.py", "--smoke", "--sizes", "28", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "| 28 px |" in done.stdout and "RandomAffine" in done.stdout and "RandomHueDirect" in done.stdout


def test_hardware_use_benchmark_smoke(fashion_mnist_root):
    done = _run("benchmarks/hardware_use.py", "--smoke", "--tasks=dae", *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    assert "| dae | 128 |" in done.stdout and "Measured fp32 matmul peak:" in done.stdout
    assert "steps in fp32" in done.stdout


def test_scaling_benchmark_smoke(fashion_mnist_root):
    done = _run("benchmarks/scaling.py", "--smoke", *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    assert "| 64 |" in done.stdout and "| 16 | 2 |" in done.stdout


def test_quality_table_benchmark_smoke(fashion_mnist_root, tmp_path):
    runs = tmp_path / "runs"
    args = ["benchmarks/quality_table.py", "--smoke", "--runs", str(runs), "--label-fraction", "0.5"]
    done = _run(*args, *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]  # after the header
    assert [row.split(" | ")[0] for row in rows] == [
        "| dae",
        "| rotation",
        "| exemplar",
        "| relative_patch",
        "| random init (control)",
        "| raw pixels (control)",
        "| supervised from scratch, all labels (control)",
    ]
    assert all(row.count("%") >= 4 for row in rows[:4]), "probe, best layer, kNN and fine-tuning per task"
    assert "Every task beats the random-init encoder on the last-layer probe:" in done.stdout
    # A second run reuses the finished pretraining runs instead of training again.
    again = _run(*args, "--tasks=rotation", *_tiny_fashion_mnist(fashion_mnist_root))
    assert again.returncode == 0, again.stderr
    assert "| rotation |" in again.stdout and "(reused run)" in again.stdout
