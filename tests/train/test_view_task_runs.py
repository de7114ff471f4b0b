"""BYOL, VICReg and multi-crop in real pretraining runs: the teacher's momentum logged and resumed bit-identical,
views counted, the representation gauges in TensorBoard and metrics.json with a one-time collapse warning,
and bad options refused before anything is written. (Under torchrun: tests/train/test_host_syncs.py.)"""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.utils.files import safe_torch_load

from ..helpers import folder_overrides, interrupt_after_checkpoint

BYOL_MULTI_CROP = ["-c", "configs/fashion_mnist/byol.yaml", "task.local_crops=2", "task.hidden_dim=32"]


def _pretrain(image_folder, out, args, name="run", extra=(), resume=False):
    argv = ["pretrain", *args, *folder_overrides(image_folder, out, name), *extra]
    return main(argv + (["--resume"] if resume else []))


def test_byol_with_multi_crop_logs_its_teacher_views_and_gauges(image_folder, tmp_path):
    extra = ["trainer.max_steps=4", "gauges.every=2", "gauges.images=20"]
    assert _pretrain(image_folder, tmp_path, BYOL_MULTI_CROP, extra=extra) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["views_per_image"] == 4 and metrics["views_seen"] == 4 * metrics["images_seen"]
    assert metrics["views_per_s"] == pytest.approx(4 * metrics["images_per_s"], rel=0.01)
    assert 0.99 < metrics["pretext_teacher_momentum"] <= 1.0
    assert [g["step"] for g in metrics["gauges"]] == [2, 4]
    assert metrics["gauge_rankme"] == metrics["gauges"][-1]["rankme"]
    assert 1 <= metrics["gauge_rankme"] <= 20 and metrics["gauge_std"] > 0
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("gauges/rankme")] == [2, 4]
    assert [e.step for e in events.Scalars("train/teacher_momentum")] == [1, 2, 3, 4]
    assert "byol/image_then_views" in events.Tags()["images"]


def test_gauges_warn_once_naming_the_step_when_the_representation_collapses(image_folder, tmp_path, capsys):
    # floors no encoder can clear: the warning's path, once, at the first measurement
    extra = ["trainer.max_steps=4", "gauges.every=1", "gauges.min_rank=1000", "gauges.images=20"]
    assert _pretrain(image_folder, tmp_path, ["-c", "configs/fashion_mnist/vicreg.yaml"], extra=extra) == 0
    err = capsys.readouterr().err
    assert err.count("representation collapsed") == 1 and "at step 1 (RankMe" in err and "gauges.min_rank" in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["collapse_warning_step"] == 1


def test_gauges_do_not_change_training(image_folder, tmp_path):
    args = ["-c", "configs/fashion_mnist/vicreg.yaml"]
    assert _pretrain(image_folder, tmp_path, args, "gauged", ["gauges.every=1"]) == 0
    assert _pretrain(image_folder, tmp_path, args, "plain", ["gauges.every=null"]) == 0
    gauged = safe_torch_load(tmp_path / "gauged" / "checkpoints/last.pt")["model"]
    plain = safe_torch_load(tmp_path / "plain" / "checkpoints/last.pt")["model"]
    assert all(torch.equal(gauged[k], plain[k]) for k in plain)
    assert "gauges" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


def test_byol_resumes_bit_identical_teacher_included(image_folder, tmp_path, monkeypatch):
    extra = ["trainer.max_steps=7", "trainer.checkpoint_every=2", "gauges.every=3", "gauges.images=20"]
    assert _pretrain(image_folder, tmp_path, BYOL_MULTI_CROP, "straight", extra) == 0
    interrupt_after_checkpoint(monkeypatch, 4)
    assert _pretrain(image_folder, tmp_path, BYOL_MULTI_CROP, "resumed", extra) == 130
    monkeypatch.undo()
    assert _pretrain(image_folder, tmp_path, BYOL_MULTI_CROP, "resumed", extra, resume=True) == 0
    straight = safe_torch_load(tmp_path / "straight" / "checkpoints/last.pt")
    resumed = safe_torch_load(tmp_path / "resumed" / "checkpoints/last.pt")
    assert any(key.startswith("teacher.") for key in straight["model"])
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    gauges = [json.loads((tmp_path / n / "metrics.json").read_text())["gauges"] for n in ("straight", "resumed")]
    assert gauges[0] == gauges[1] and [g["step"] for g in gauges[0]] == [3, 6, 7]


@pytest.mark.parametrize(
    "config, option, value",
    [
        ("byol", "momentum", "1.5"),
        ("byol", "projection_dim", "0"),
        ("vicreg", "projection_dim", "0"),
        ("vicreg", "local_size", "16"),  # the images are 16 px: a local crop must be smaller
        ("exemplar", "local_crops", "-2"),
    ],
)
def test_bad_view_task_options_exit_2_naming_the_key_before_anything_is_written(
    image_folder, tmp_path, capsys, config, option, value
):
    args = ["-c", f"configs/fashion_mnist/{config}.yaml"]
    assert _pretrain(image_folder, tmp_path, args, extra=[f"task.{option}={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"task.{option}" in err[0]
    assert not (tmp_path / "run").exists()
