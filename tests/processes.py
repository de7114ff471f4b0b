"""Helpers that run ssl-pretrain as real processes: plain, under torchrun, and killed part-way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

TIMEOUT = 300


def cli_command(args: list[str], nproc: int = 1) -> list[str]:
    """``python -m ssl_pretrain ARGS``, or the same under ``torchrun --standalone`` with ``nproc`` processes."""
    if nproc == 1:
        return [sys.executable, "-m", "ssl_pretrain", *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, "-m", "ssl_pretrain", *args]


def run_cli(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(args, nproc), capture_output=True, text=True, timeout=TIMEOUT)


def run_on_nodes(args: list[str], nodes: int) -> list[subprocess.CompletedProcess]:
    """One ``torchrun --nnodes`` launcher per "node" (all on this machine), meeting at a c10d rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", "--nproc_per_node=1"]
    launcher += ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=ssl_pretrain_test"]
    launched = [
        subprocess.Popen(
            [*launcher, "-m", "ssl_pretrain", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(nodes)
    ]
    results = []
    for process in launched:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def kill_when(args: list[str], marker: Path, nproc: int = 1) -> None:
    """Start the command, SIGKILL its whole process group as soon as ``marker`` exists."""
    process = subprocess.Popen(
        cli_command(args, nproc), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"run ended (exit {process.returncode}) before {marker} appeared: "
                                 f"{process.stderr.read().decode()[-2000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"{marker} did not appear in {TIMEOUT} s")
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()


def noise_folder(root: Path, count: int, size: int = 32) -> Path:
    """``count`` random RGB PNGs of ``size`` px in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class_{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root
