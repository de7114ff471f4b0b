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


def torchrun(nproc: int) -> list[str]:
    """``torchrun --standalone --nproc_per_node=nproc``, through this Python."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def cli_command(args: list[str], nproc: int = 1) -> list[str]:
    """``python -m ssl_pretrain ARGS``, or the same under ``torchrun --standalone`` with ``nproc`` processes."""
    if nproc == 1:
        return [sys.executable, "-m", "ssl_pretrain", *args]
    return [*torchrun(nproc), "-m", "ssl_pretrain", *args]


def _start(command: list[str]) -> subprocess.Popen:
    """``command`` with Python's fault handler on (each Python process prints its threads' stacks on SIGABRT)."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its ranks in sessions of their own, so a process group
    does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait up to ``TIMEOUT`` s. A command still running then is stuck: SIGABRT makes every Python process
    under it (ranks, loader workers, then the launcher) print where each of its threads is, and that goes
    into the failure, so a rare hang on CI says where it hung."""
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        below = _descendants(process.pid)
        _signal(below, signal.SIGABRT)
        time.sleep(2)
        _signal([process.pid], signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _signal([process.pid, *below], signal.SIGKILL)
            stdout, stderr = process.communicate()
        raise AssertionError(
            f"{' '.join(process.args[:8])} ... still running after {TIMEOUT} s; the stacks at SIGABRT:\n"
            f"{stderr[-12000:]}"
        ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    return _finish(_start(cli_command(args, nproc)))


def run_command(command: list[str]) -> subprocess.CompletedProcess:
    """Any command, with the same time limit and stacks-on-hang as :func:`run_cli`."""
    return _finish(_start(command))


def run_on_nodes(args: list[str], nodes: int) -> list[subprocess.CompletedProcess]:
    """One ``torchrun --nnodes`` launcher per "node" (all on this machine), meeting at a c10d rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", "--nproc_per_node=1"]
    launcher += ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=ssl_pretrain_test"]
    launched = [_start([*launcher, "-m", "ssl_pretrain", *args]) for _ in range(nodes)]
    return [_finish(process) for process in launched]


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
