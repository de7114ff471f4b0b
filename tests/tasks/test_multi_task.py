"""Multi-task pretext training: sub-tasks share one trunk, losses are weighted and summed, every run feature works."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.build import make_task
from ssl_pretrain.cli import main
from ssl_pretrain.config import load_config
from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.errors import ConfigError
from ssl_pretrain.tasks import MultiTask, RotationPrediction
from ssl_pretrain.utils.files import safe_torch_load

from ..helpers import folder_overrides, interrupt_after_checkpoint

TWO = "task.tasks=[{name: rotation, weight: 0.5}, {name: dae, level: 0.3}]"


def _encoder():
    torch.manual_seed(0)
    return build_encoder("small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, 1, 16, [0.5], [0.25])


def test_config_records_every_sub_task_with_its_defaults():
    config = load_config(None, ["task.name=multi", TWO])
    rotation, dae = config.to_dict()["task"]["tasks"]
    assert rotation == {"name": "rotation", "weight": 0.5, "mode": "one", "head_hidden": 0}
    assert dae["name"] == "dae" and dae["weight"] == 1.0 and dae["level"] == 0.3 and dae["corruption"] == "masking"


@pytest.mark.parametrize(
    "tasks, key",
    [
        ("[{name: jigsaw}]", "task.tasks[0].name"),
        ("[{name: rotation}, {name: multi}]", "task.tasks[1].name"),
        ("[{name: rotation, weight: 0}]", "task.tasks[0].weight"),
        ("[{name: rotation, weight: -1}]", "task.tasks[0].weight"),
        ("[{name: rotation, spin: 3}]", "task.tasks[0].spin"),
        ("[{name: rotation, mode: some}]", "task.tasks[0].mode"),
        ("[{name: rotation}, {name: rotation}]", "task.tasks[1].name"),
        ("[]", "task.tasks"),
    ],
)
def test_bad_sub_tasks_name_their_key(tasks, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["task.name=multi", f"task.tasks={tasks}"])
    assert err.value.key == key


def test_a_sub_tasks_constructor_check_names_its_entry(capsys):
    config = load_config(None, ["task.name=multi", "task.tasks=[{name: rotation}, {name: exemplar, copies: 1}]"])
    with pytest.raises(ConfigError) as err:
        make_task(config, _encoder())
    assert err.value.key == "task.tasks[1].copies"


def test_the_trunk_is_shared_and_saved_once_and_the_loss_is_the_weighted_sum():
    encoder = _encoder()
    task = MultiTask(encoder, tasks=[{"name": "rotation", "weight": 0.5}, {"name": "dae", "weight": 2.0}])
    assert task.subtasks["rotation"].encoder is encoder and task.subtasks["dae"].encoder is encoder
    keys = list(task.state_dict())
    assert not any(".encoder." in k for k in keys), "the trunk appears once, under encoder."
    assert sum(k.startswith("encoder.") for k in keys) == len(encoder.state_dict())
    images = torch.rand(8, 1, 16, 16)
    torch.manual_seed(1)
    inputs, targets = task.make_batch(images, torch.arange(8))
    loss, metrics = task.loss(task(inputs), targets)
    parts = {name: task.subtasks[name].loss(task.subtasks[name](inputs[name]), targets[name])[0] for name in inputs}
    torch.testing.assert_close(loss, 0.5 * parts["rotation"] + 2.0 * parts["dae"])
    assert set(metrics) == {"rotation/loss", "rotation/accuracy", "dae/loss"}
    # The sub-task builds its batch as it would alone (same draws from the same seed).
    rotation_alone = RotationPrediction(_encoder())
    torch.manual_seed(1)
    alone, labels = rotation_alone.make_batch(images, torch.arange(8))
    assert torch.equal(inputs["rotation"], alone) and torch.equal(targets["rotation"], labels)


def test_sub_tasks_that_choose_their_own_images_are_refused():
    task = MultiTask(_encoder(), tasks=[{"name": "exemplar", "num_seeds": 4, "loss": "classifier"}])
    with pytest.raises(ConfigError, match="task.tasks\\[0\\]"):
        task.select_images(16, seed=0)


def _pretrain(image_folder, tmp_path, name, *extra, resume=False):
    args = ["pretrain", "-c", "configs/fashion_mnist/multi.yaml", *folder_overrides(image_folder, tmp_path, name)]
    args += ["model.widths=[8, 16]", "model.blocks=[1, 1]", "task.tasks=[{name: rotation}, {name: dae}]", *extra]
    return main(args + (["--resume"] if resume else []))


def test_a_multi_task_run_logs_each_sub_task_exports_and_resumes_exactly(image_folder, tmp_path, monkeypatch):
    extra = ["trainer.max_steps=5", "trainer.checkpoint_every=2"]
    assert _pretrain(image_folder, tmp_path, "straight", *extra) == 0
    run = tmp_path / "straight"
    events = EventAccumulator(str(run / "tb")).Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/rotation/loss", "train/rotation/accuracy", "train/dae/loss"} <= set(scalars)
    assert any(tag.startswith("dae/") for tag in events.Tags()["images"]), "each sub-task's previews"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["pretext_rotation/accuracy"] <= 1
    assert set(torch.load(run / "encoder.pt", weights_only=True)) == {
        k.removeprefix("encoder.trunk.")
        for k in safe_torch_load(run / "checkpoints" / "last.pt")["model"]
        if k.startswith("encoder.trunk.")
    }
    assert main(["probe", f"evaluation.encoder={run}", "probe.max_iter=5"]) == 0

    interrupt_after_checkpoint(monkeypatch, 2)
    assert _pretrain(image_folder, tmp_path, "resumed", *extra) == 130
    monkeypatch.undo()
    assert _pretrain(image_folder, tmp_path, "resumed", *extra, resume=True) == 0
    straight = safe_torch_load(run / "checkpoints" / "last.pt")["model"]
    resumed = safe_torch_load(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(value, resumed[key]) for key, value in straight.items())
