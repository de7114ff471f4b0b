"""Helpers shared by the benchmark scripts: machine description, appending to RESULTS.md, running a
measurement in a fresh process, device synchronisation."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ssl_pretrain.build import make_encoder, make_task, resolve_device
from ssl_pretrain.config import Config, load_config
from ssl_pretrain.data import data_info
from ssl_pretrain.utils.optim import make_optimizer
from ssl_pretrain.utils.precision import resolve_channels_last, resolve_precision, to_memory_format

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "RESULTS.md"


def shipped_configs(dataset: str = "fashion_mnist") -> list[str]:
    """The names of every config shipped for ``dataset`` (``configs/<dataset>/*.yaml``), read from the folder so
    that "every shipped config" stays true when one is added."""
    return sorted(path.stem for path in (REPO / "configs" / dataset).glob("*.yaml"))


def machine() -> str:
    import kornia
    import torchvision

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, kornia {kornia.__version__}, Python {platform.python_version()}"
    )


def command_line() -> str:
    """The command that is running, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in ["python", str(script), *sys.argv[1:]])


def commit() -> str:
    """The checked-out commit, and whether code differs from it (RESULTS.md itself aside)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return "unknown (git not found)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    written = ("benchmarks/RESULTS.md", "benchmarks/records/")  # what the benchmarks themselves write
    changed = [line for line in status.stdout.splitlines() if not any(w in line for w in written)]
    return head.stdout.strip() + (" with uncommitted changes" if changed else "")


STARTED_AT = commit()  # the code a benchmark runs is the code at its start, whatever is committed meanwhile


def append_results(title: str, body: str) -> None:
    """Append ``body`` verbatim to RESULTS.md under a heading with the command, date, commit and machine."""
    date = datetime.date.today().isoformat()
    header = f"- Command: `{command_line()}`\n- Date: {date}, commit {STARTED_AT}\n- Machine: {machine()}"
    with RESULTS.open("a") as f:
        f.write(f"\n## {title}\n\n{header}\n\n{body.rstrip()}\n")


RECORDS = Path(__file__).parent / "records"


def report(title: str, body: str, smoke: bool, record: dict | None = None, record_dir: Path | None = None) -> None:
    """Print ``body``; append it to RESULTS.md under ``title`` unless this is a ``--smoke`` run. ``record``
    (every cell's choice, validation and test score) is written as JSON beside the printout: into
    ``benchmarks/records/`` (named by the script and the time, cited in the entry), or with ``--smoke`` into
    ``record_dir``."""
    if record is not None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = RECORDS if not smoke else record_dir or Path(tempfile.gettempdir())
        path = folder / f"{Path(sys.argv[0]).stem}-{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"command": command_line(), "commit": STARTED_AT, **record}, indent=1))
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        body = f"{body.rstrip()}\n\nEvery cell's choice, validation and test score: `{shown}`."
    print(body)
    if not smoke:
        append_results(title, body)


def run_main(main) -> None:
    """Run a benchmark's ``main`` as the command line runs a command: bad input (a config key, a path, a run)
    is one line on stderr naming it and exit code 2, not a traceback."""
    from ssl_pretrain.errors import BadInput

    try:
        main()
    except BadInput as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run_config(run: Path, overrides: list[str]) -> Config:
    """The config of a finished run directory, evaluating its encoder (no progress bars)."""
    return load_config(run / "config.yaml", [f"evaluation.encoder={run}", "trainer.progress=false", *overrides])


def sync(device) -> None:
    """Wait for the device's queued work (timings on CUDA are otherwise of the launches only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_captured(command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` (a fresh process), its stdout and stderr kept; exit with the tail of its stderr if it
    fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done


def run_checked(command: list[str]) -> str:
    """:func:`run_captured`'s stdout."""
    return run_captured(command).stdout


@dataclass
class BareStep:
    """The trainer's training step written out by hand, for timing against: the task's on-device batch,
    forward and loss in the trainer's precision and memory layout, backward, optimizer step."""

    config: Config
    device: torch.device

    def __post_init__(self) -> None:
        torch.manual_seed(self.config.seed)
        trainer = self.config.trainer
        self.info = data_info(self.config.data)
        self.task = make_task(self.config, make_encoder(self.config, self.info)).to(self.device)
        self.channels_last = resolve_channels_last(trainer.channels_last, self.device, self.task)
        if self.channels_last:
            self.task.to(memory_format=torch.channels_last)
        self.precision = resolve_precision(trainer.precision, self.device, warn=False)
        self.model = torch.compile(self.task) if trainer.compile else self.task
        self.optimizer = make_optimizer(self.task, trainer, fused=self.precision.needs_fused_optimizer)

    @classmethod
    def from_config(cls, config: Config) -> BareStep:
        return cls(config, resolve_device(config.device))

    def __call__(self, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """One step on float ``images (B, C, H, W)`` in [0, 1] on the device; returns the loss."""
        inputs, targets = self.task.make_batch(images, indices)
        with self.precision.autocast():
            loss, _ = self.task.loss(self.model(to_memory_format(inputs, self.channels_last)), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, self.optimizer)
        return loss
