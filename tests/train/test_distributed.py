"""Data-parallel pretraining: 2 real CPU processes under torchrun (gloo) against one process."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.data import EpochBatchSampler
from ssl_pretrain.train.distributed import rank_seed
from ssl_pretrain.utils.files import safe_torch_load, weights_digest

from ..helpers import folder_overrides
from ..processes import run_cli, run_on_nodes

# Group norm: no batch statistics, so 2 x 4 images compute what 1 x 8 images compute.
GROUP_NORM = ["model.norm=group", "trainer.max_steps=6", "trainer.checkpoint_every=4"]
TASKS = {
    "rotation": ["task.mode=all", "task.head_hidden=0"],
    # The contrastive loss needs the whole batch (gathered across ranks); identity "augmentations"
    # make the copies deterministic so the two runs see the same inputs.
    "exemplar": [
        "task.loss=contrastive",
        "task.num_seeds=null",
        "task.copies=2",
        "task.translate=0",
        "task.scale=[1, 1]",
        "task.rotation=0",
        "task.brightness=0",
        "task.contrast=0",
        "task.crop_scale=null",
        "task.flip=false",
    ],
    # Both at once on one trunk: the contrastive sub-task makes the multi-task gather every rank's outputs.
    "multi": [
        "task.tasks=[{name: rotation, mode: all}, {name: exemplar, loss: contrastive, num_seeds: null, copies: 2, "
        "translate: 0, scale: [1, 1], rotation: 0, brightness: 0, contrast: 0}]"
    ],
}


def test_ranks_shard_the_global_batch_of_one_process():
    single = list(EpochBatchSampler(50, 8, seed=3))
    ranks = [list(EpochBatchSampler(50, 4, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 6
    for b, batch in enumerate(single):
        assert ranks[0][b] + ranks[1][b] == batch
    assert len({rank_seed(7, r) for r in range(8)}) == 8 and rank_seed(7, 0) == 7


@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_processes_match_one_process_on_the_same_global_batch(image_folder, tmp_path, task):
    common = ["-c", f"configs/fashion_mnist/{task}.yaml", *folder_overrides(image_folder, tmp_path), *GROUP_NORM]
    common += TASKS[task]
    result = run_cli(["pretrain", *common, "run_name=ddp", "trainer.batch_size=4"], nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory:") == 1, "only rank 0 reports"
    assert main(["pretrain", *common, "run_name=single", "trainer.batch_size=8"]) == 0

    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["global_batch_size"] == 8 and metrics["images_seen"] == 48
    ddp = safe_torch_load(tmp_path / "ddp" / "checkpoints" / "last.pt")
    single = safe_torch_load(tmp_path / "single" / "checkpoints" / "last.pt")
    digests = metrics["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] == weights_digest(ddp["model"]), "replicas identical"
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert ddp["step"] == single["step"] == 6 and ddp["world_size"] == 2 and len(ddp["rng_other_ranks"]) == 1
    assert not torch.equal(ddp["rng"]["torch"], ddp["rng_other_ranks"][0]["torch"]), "ranks draw differently"
    event_files = list((tmp_path / "ddp" / "tb").glob("events.*"))
    assert len(event_files) == 1, "rank 0 alone writes TensorBoard"
    events = EventAccumulator(str(tmp_path / "ddp" / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))


@pytest.mark.parametrize("task", ["dae", "relative_patch"])
def test_every_other_task_trains_data_parallel(image_folder, tmp_path, task):
    extra = ["trainer.max_steps=3", "trainer.batch_size=4"]
    if task == "dae":
        extra += ["model.downsample=maxpool", "task.upsample=max_unpool"]  # indices saved by the encoder
    args = ["pretrain", "-c", f"configs/fashion_mnist/{task}.yaml", *folder_overrides(image_folder, tmp_path), *extra]
    result = run_cli(args, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 3 and metrics["images_seen"] == 24
    assert len(set(metrics["weights_sha256_per_rank"])) == 1


def test_unreadable_files_leave_every_process_a_full_batch_and_no_wait(image_folder, tmp_path):
    """Files a process cannot read are refilled from its own batch: no process asks the others whether a batch
    is empty, the contrastive loss gathers known shapes, and the files are still counted."""
    for i in range(12):
        (image_folder / f"class_{i % 3}" / f"broken_{i}.png").write_bytes(b"not a png")
    extra = ["trainer.epochs=1", "trainer.max_steps=100", "trainer.batch_size=4", "data.pretrain_on_test=true"]
    extra += ["trainer.sync_debug=count", *TASKS["exemplar"][:3]]
    args = ["pretrain", "-c", "configs/fashion_mnist/exemplar.yaml", *folder_overrides(image_folder, tmp_path), *extra]
    result = run_cli(args, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["images_seen"] == 48 and metrics["skipped_images"] == 12
    assert metrics["step_host_syncs_per_rank"] == [{}, {}] and metrics["sync_checked_steps"] == 6
    assert len(set(metrics["weights_sha256_per_rank"])) == 1
    assert "warning: skipped 12 unreadable image file(s) in epoch 1" in result.stderr


def test_two_nodes_meet_at_a_rendezvous_and_train_one_model(image_folder, tmp_path):
    common = ["-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path), *GROUP_NORM]
    common += TASKS["rotation"]
    nodes = run_on_nodes(["pretrain", *common, "run_name=nodes", "trainer.batch_size=4"], nodes=2)
    assert all(n.returncode == 0 for n in nodes), [n.stderr[-2000:] for n in nodes]
    assert sum(n.stdout.count("run directory:") for n in nodes) == 1
    assert main(["pretrain", *common, "run_name=single", "trainer.batch_size=8"]) == 0
    metrics = json.loads((tmp_path / "nodes" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(set(metrics["weights_sha256_per_rank"])) == 1
    two_nodes = safe_torch_load(tmp_path / "nodes" / "checkpoints" / "last.pt")["model"]
    single = safe_torch_load(tmp_path / "single" / "checkpoints" / "last.pt")["model"]
    for key, value in single.items():
        torch.testing.assert_close(two_nodes[key], value, rtol=1e-4, atol=1e-5, msg=key)


def _as_rank(monkeypatch, rank: int, size: int = 2) -> None:
    """The environment torchrun gives process ``rank`` of ``size``."""
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", size)):
        monkeypatch.setenv(name, str(value))


def test_evaluation_under_torchrun_runs_once_on_rank_0(image_folder, tmp_path, capsys, monkeypatch):
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main(args) == 0
    knn = ["knn", f"evaluation.encoder={tmp_path / 'run'}", "knn.k=3"]
    _as_rank(monkeypatch, 1)
    capsys.readouterr()
    assert main(knn) == 0
    assert capsys.readouterr().err == "" and not (tmp_path / "run" / "knn.json").exists()
    _as_rank(monkeypatch, 0)
    assert main(knn) == 0
    assert "note: knn runs on one process (rank 0 of 2)" in capsys.readouterr().err
    assert (tmp_path / "run" / "knn.json").is_file()
    assert main(["demo"]) == 2 and "demo: runs on one process" in capsys.readouterr().err


def test_sync_batchnorm_on_cpu_processes_is_refused_with_its_key(image_folder, tmp_path, capsys, monkeypatch):
    _as_rank(monkeypatch, 0)
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, "trainer.sync_batchnorm=true"]) == 2  # before joining any process group
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssl-pretrain: error: trainer.sync_batchnorm: needs CUDA")
    assert not (tmp_path / "run").exists()


def test_a_fixed_gpu_under_torchrun_is_refused_and_cuda_maps_to_the_local_rank():
    from ssl_pretrain.errors import ConfigError
    from ssl_pretrain.train.distributed import World, rank_device

    world = World(rank=3, size=4, local_rank=1)
    assert rank_device(torch.device("cuda"), world) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu"), world) == torch.device("cpu")
    with pytest.raises(ConfigError, match="device: cuda:0 under torchrun would put all 4 processes on one GPU"):
        rank_device(torch.device("cuda", 0), world)
    assert rank_device(torch.device("cuda", 0), World(0, 1, 0)) == torch.device("cuda", 0)
    launched_alone = World(0, 1, 0, launched=True)  # torchrun --nproc_per_node=1: a group of one
    assert launched_alone.distributed and not World(0, 1, 0).distributed
    assert rank_device(torch.device("cuda", 1), launched_alone) == torch.device("cuda", 1)


def test_the_process_group_has_the_configured_timeout(monkeypatch):
    from ssl_pretrain.train import distributed

    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    distributed.start(distributed.World(0, 2, 0), torch.device("cpu"), timeout_seconds=42)
    assert calls == [("gloo", {"timeout": __import__("datetime").timedelta(seconds=42)})]
