"""``ssl-pretrain demo``: the README's main job.

Pretrains the default denoising autoencoder (small ResNet, masking noise) on Fashion-MNIST for
about 1.3 epochs (600 steps of 128 images), then runs the frozen linear probe on it and on a
randomly initialised encoder of the same architecture, and prints both top-1 figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..build import start
from ..config import Config
from ..evaluation.frozen.probe import format_frozen_report, run_probe
from ..evaluation.shared.reports import FrozenReport
from ..train.trainer import pretrain


def _free_run_name(output_dir: str) -> str:
    n = 1
    while (Path(output_dir) / f"demo-{n}").exists():
        n += 1
    return f"demo-{n}"


@dataclass
class Demo:
    """The demo's probe report and its run directory."""

    report: FrozenReport
    run_dir: Path


def run_demo(config: Config) -> Demo:
    """Pretrain then probe (the table's ``DEMO_SETTINGS`` under the user's overrides: any setting may change). Without a
    ``run_name`` of its own, the run goes to the first free ``demo-N``."""
    if config.run_name == f"{config.data.name}-{config.task.name}":
        config.run_name = _free_run_name(config.output_dir)
    run_dir = pretrain(config)
    config.evaluation.encoder = str(run_dir)
    return Demo(run_probe(config, start(config, "feature extraction")), run_dir)


def format_demo(demo: Demo) -> str:
    report = demo.report
    return (
        f"{format_frozen_report(report)}\n\n"
        f"DAE-pretrained encoder: {report.test_top1('pretrained'):.2f}% top-1 | randomly initialised encoder: "
        f"{report.test_top1('random_init'):.2f}% top-1 (linear probe, Fashion-MNIST test set)\n"
        f"run directory: {demo.run_dir}  (TensorBoard: tensorboard --logdir {demo.run_dir / 'tb'})"
    )
