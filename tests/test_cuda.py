"""What only a GPU can show: the training step under PyTorch's sync debug mode, the run's own device's RNG.

Skipped without CUDA; ``benchmarks/gpu_check.py`` runs them (``pytest -m cuda``)."""

import json
from pathlib import Path

import pytest
import torch

from ssl_pretrain.cli import main
from ssl_pretrain.utils.rng import rng_state, set_rng_state

from .helpers import TINY

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
GREY = sorted(p.stem for p in Path("configs/fashion_mnist").glob("*.yaml"))  # every shipped grey config


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("config", GREY)
def test_no_step_synchronises_under_cuda_sync_debug_mode(config, precision, fashion_mnist_root, tmp_path):
    args = ["pretrain", "-c", f"configs/fashion_mnist/{config}.yaml", *TINY, "device=cuda", f"output_dir={tmp_path}"]
    args += [f"data.root={fashion_mnist_root}", "data.download=false", "run_name=run", "trainer.max_steps=5"]
    assert main([*args, f"trainer.precision={precision}", "trainer.sync_debug=error"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["sync_checked_steps"] == 4 and metrics["precision"] == precision


def test_the_rng_state_of_the_runs_own_device_is_saved_and_restored():
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    torch.cuda.manual_seed_all(0)
    torch.rand(3, device=device)
    saved = rng_state(device)
    first = torch.rand(3, device=device)
    torch.rand(5, device=device)
    set_rng_state(saved, device)
    assert torch.equal(torch.rand(3, device=device), first)
