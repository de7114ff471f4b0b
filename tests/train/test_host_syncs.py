"""A training step makes the host wait for the device at no point: counted on CPU (at the Python and the ATen
level, ``trainer.sync_debug=count``) for every shipped config, grey and colour, in fp32, bf16 and fp16, in one
process and under torchrun with two."""

import json
from pathlib import Path

import pytest

from ssl_pretrain.cli import main
from ssl_pretrain.tasks import RotationPrediction

from ..helpers import TINY
from ..processes import run_command, torchrun

SHIPPED = sorted(str(p) for p in Path("configs").glob("*/*.yaml"))
PRECISIONS = ("fp32", "bf16", "fp16")
# Options that reach code paths the shipped values skip (the down- and up-sampling of patches; views without
# local crops).
TASK_OPTIONS = {"relative_patch": ["task.downsample_prob=0.5"], "vicreg": ["task.local_crops=0"]}
STEPS = 4


def config_args(config: str, fashion_mnist_root, image_folder, out, name: str) -> list[str]:
    """``pretrain`` arguments for shipped ``config`` at test size: Fashion-MNIST's stand-in for its grey
    configs, generated RGB images for the colour ones."""
    grey = "fashion_mnist" in config
    tiny = TINY if grey else [arg for arg in TINY if not arg.startswith("model.")]  # their own backbone
    args = ["pretrain", "-c", config, *tiny, f"output_dir={out}", f"run_name={name}", f"trainer.max_steps={STEPS}"]
    args += ["trainer.log_every=2", "trainer.sync_debug=count"]
    if grey:
        args += [f"data.root={fashion_mnist_root}", "data.download=false"]
    else:  # 16 px keeps ResNet-18 quick; relative patch location needs room for its 3x3 grid
        size = 32 if "relative_patch" in config else 16
        args += ["data.name=image_folder", f"data.root={image_folder}", f"data.image_size={size}"]
    return args + TASK_OPTIONS.get(Path(config).stem, [])


def syncs_of(run: Path) -> tuple[int, list[dict]]:
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["sync_checked_steps"], metrics["step_host_syncs_per_rank"]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("config", SHIPPED)
def test_no_training_step_waits_for_the_device(config, precision, fashion_mnist_root, image_folder, tmp_path):
    args = config_args(config, fashion_mnist_root, image_folder, tmp_path, "run")
    assert main([*args, f"trainer.precision={precision}"]) == 0
    assert syncs_of(tmp_path / "run") == (STEPS, [{}])


def test_no_step_waits_under_torchrun_with_two_processes(fashion_mnist_root, image_folder, tmp_path):
    """Every shipped config in fp32 and the Fashion-MNIST ones in every precision, in one torchrun launch (the
    driver keeps its process group across the runs): gathered batches, DDP's all-reduce and the fp16 scaler
    included; each run's two replicas end bit-identical (BYOL's momentum teacher with them). (The colour
    configs' ResNet-18 in emulated fp16 is slow on 2 cores, and BYOL and VICReg add nothing per precision that
    the others do not: one process covers those precisions.)"""
    every_precision = [c for c in SHIPPED if "fashion_mnist" in c and Path(c).stem not in ("byol", "vicreg")]
    combinations = [(c, p) for c in SHIPPED for p in PRECISIONS if p == "fp32" or c in every_precision]
    runs = [
        [*config_args(config, fashion_mnist_root, image_folder, tmp_path, f"{Path(config).parent.name}-"
                      f"{Path(config).stem}-{precision}"), f"trainer.precision={precision}"]
        for config, precision in combinations
    ]  # fmt: skip
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    done = run_command([*torchrun(2), str(Path(__file__).parent / "sync_driver.py"), str(tmp_path / "runs.json")])
    assert done.returncode == 0, done.stderr[-4000:]
    for args in runs:
        name = next(a for a in args if a.startswith("run_name=")).split("=", 1)[1]
        assert syncs_of(tmp_path / name) == (STEPS, [{}, {}]), name
        digests = json.loads((tmp_path / name / "metrics.json").read_text())["weights_sha256_per_rank"]
        assert len(digests) == 2 and digests[0] == digests[1], f"{name}: the replicas (a teacher too) are bit-identical"


def test_the_count_catches_a_read_added_to_the_step(fashion_mnist_root, image_folder, tmp_path, monkeypatch):
    loss = RotationPrediction.loss

    def reads_its_loss(self, outputs, targets):
        value, metrics = loss(self, outputs, targets)
        print(f"loss {value.item():.3f}")  # the kind of line that stalls a GPU every step
        return value, metrics

    monkeypatch.setattr(RotationPrediction, "loss", reads_its_loss)
    config = "configs/fashion_mnist/rotation.yaml"
    assert main(config_args(config, fashion_mnist_root, image_folder, tmp_path, "run")) == 0
    assert syncs_of(tmp_path / "run") == (STEPS, [{"item": STEPS}])


def test_sync_debug_error_stops_at_the_first_wait_naming_it(fashion_mnist_root, image_folder, tmp_path, capsys):
    from ssl_pretrain.tasks import rotation

    config = "configs/fashion_mnist/rotation.yaml"
    args = config_args(config, fashion_mnist_root, image_folder, tmp_path, "run")
    original = rotation.RotationPrediction.make_batch

    def builds_labels_from_a_list(self, images, indices=None):
        inputs, targets = original(self, images, indices)
        import torch

        return inputs, targets + torch.tensor([0] * len(targets), device=images.device)

    rotation.RotationPrediction.make_batch = builds_labels_from_a_list
    try:
        assert main([*args, "trainer.sync_debug=error"]) == 1
    finally:
        rotation.RotationPrediction.make_batch = original
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "ssl-pretrain: training stopped: trainer.sync_debug=error: step 1: a training step waits for the device: "
        "torch.tensor(host data, device=...)"
    )
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
