"""Exact resume: a real run SIGKILLed part-way and resumed ends bit-identical to an uninterrupted run."""

import pytest
import torch
from torch.utils.data import Dataset

from ssl_pretrain.data import EpochBatchSampler, make_loader
from ssl_pretrain.data.loader import seed_workers
from ssl_pretrain.utils.files import safe_torch_load

from ..processes import kill_when, noise_folder, run_cli

# DAE with random masks, BatchNorm, AdamW with warm-up + cosine, 2 loader workers, 8 batches an epoch.
RUN = [
    "-c",
    "configs/fashion_mnist/dae.yaml",
    "device=cpu",
    "model.widths=[8, 16]",
    "model.blocks=[1, 1]",
    "trainer.epochs=100",
    "trainer.max_steps=30",
    "trainer.warmup_steps=5",
    "trainer.checkpoint_every=10",
    "trainer.keep_last=3",
    "trainer.log_every=5",
    "trainer.progress=false",
    "data.name=image_folder",
    "data.image_size=32",
    "data.num_workers=2",
]


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_run_killed_with_sigkill_resumes_bit_identical(tmp_path, nproc):
    root = noise_folder(tmp_path / "images", 96)
    args = ["pretrain", *RUN, f"data.root={root}", f"output_dir={tmp_path}", f"trainer.batch_size={12 // nproc}"]
    straight = run_cli([*args, "run_name=straight"], nproc)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = tmp_path / "killed"
    kill_when([*args, "run_name=killed"], killed / "checkpoints" / "step-00000020.pt", nproc)
    assert not (killed / "metrics.json").exists() and not (killed / "encoder.pt").exists(), "killed part-way"
    resumed_from = safe_torch_load(killed / "checkpoints" / "last.pt")["step"]
    assert 20 <= resumed_from < 30
    resumed = run_cli([*args, "run_name=killed", "--resume"], nproc)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = safe_torch_load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = safe_torch_load(killed / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 30 and a["images_seen"] == b["images_seen"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    if nproc > 1:
        other_world = run_cli([*args, "run_name=killed", "--resume"], nproc=1)
        assert other_world.returncode == 2 and "was written by 2 process(es) and this run has 1" in other_world.stderr
    first, second = safe_torch_load(tmp_path / "straight" / "encoder.pt"), safe_torch_load(killed / "encoder.pt")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert sorted(p.name for p in (killed / "checkpoints").glob("step-*.pt")) == [
        "step-00000010.pt",
        "step-00000020.pt",
        "step-00000030.pt",
    ]


class _WorkerNoise(Dataset):
    """Draws from torch's RNG inside the worker: what a dataset with its own random transform does."""

    def __len__(self):
        return 8

    def __getitems__(self, indices):
        return torch.rand(len(indices))


def test_loader_workers_draw_the_same_numbers_in_the_same_epoch():
    def epoch_draws(epoch: int) -> torch.Tensor:
        sampler = EpochBatchSampler(8, 4, seed=5)
        loader = make_loader(_WorkerNoise(), sampler, num_workers=2, pin_memory=False)
        sampler.set_epoch(epoch)
        seed_workers(loader, sampler)
        return torch.cat(list(loader))

    first = epoch_draws(3)
    torch.rand(5)  # the global RNG must not matter
    assert torch.equal(epoch_draws(3), first)
    assert not torch.equal(epoch_draws(4), first)
