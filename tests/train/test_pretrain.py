"""Pretraining runs through the CLI on generated image folders: files, TensorBoard, resume, bad input."""

import json

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.utils.files import safe_torch_load

from ..helpers import folder_overrides, interrupt_after_checkpoint


def _pretrain(image_folder, out, name="run", extra=(), resume=False):
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, out, name), *extra]
    return main(args + (["--resume"] if resume else []))


def test_pretrain_writes_the_run_directory(image_folder, tmp_path):
    assert _pretrain(image_folder, tmp_path) == 0
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoints/last.pt", "encoder.pt", "encoder.yaml", "metrics.json"):
        assert (run / name).is_file(), name
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["trainer"]["max_steps"] == 3 and resolved["task"]["upsample"] == "nearest"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["images_seen"] == 24 and metrics["images_per_s"] > 0
    assert metrics["pretext_loss"] > 0
    assert 0 < metrics["loop_images_per_s"] <= metrics["images_per_s"], "the loop adds data loading and logging"
    assert metrics["peak_memory_mb"] > 50
    ckpt = safe_torch_load(run / "checkpoints/last.pt")
    assert ckpt["step"] == 3 and set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda"}


def test_tensorboard_has_scalars_and_image_grids(image_folder, tmp_path):
    assert _pretrain(image_folder, tmp_path) == 0
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/images_per_s"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert "dae/corrupted_target_reconstruction" in events.Tags()["images"]


def test_loss_decreases_over_a_short_run(image_folder, tmp_path):
    extra = ["trainer.max_steps=30", "trainer.lr=0.01", "trainer.checkpoint_every=100", "data.pretrain_on_test=true"]
    assert _pretrain(image_folder, tmp_path, extra=extra) == 0
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_resume_finishes_bit_identical_to_an_uninterrupted_run(image_folder, tmp_path, monkeypatch):
    extra = ["trainer.max_steps=7", "trainer.checkpoint_every=2"]  # 4 batches an epoch: crosses epochs
    assert _pretrain(image_folder, tmp_path, "straight", extra) == 0

    interrupt_after_checkpoint(monkeypatch, 4)
    assert _pretrain(image_folder, tmp_path, "resumed", extra) == 130
    monkeypatch.undo()
    assert safe_torch_load(tmp_path / "resumed" / "checkpoints/last.pt")["step"] == 4
    assert not (tmp_path / "resumed" / "encoder.pt").exists()

    assert _pretrain(image_folder, tmp_path, "resumed", extra, resume=True) == 0
    straight = safe_torch_load(tmp_path / "straight" / "checkpoints/last.pt")
    resumed = safe_torch_load(tmp_path / "resumed" / "checkpoints/last.pt")
    assert resumed["step"] == straight["step"] == 7
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    events = EventAccumulator(str(tmp_path / "resumed" / "tb"))
    events.Reload()
    assert sorted({e.step for e in events.Scalars("train/loss")}) == list(range(1, 8))


def test_a_new_run_never_overwrites_an_earlier_one(image_folder, tmp_path, capsys):
    assert _pretrain(image_folder, tmp_path) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _pretrain(image_folder, tmp_path, extra=["trainer.max_steps=5"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert before == after


def test_resume_with_another_architecture_is_refused_and_keeps_the_checkpoint(image_folder, tmp_path, capsys):
    assert _pretrain(image_folder, tmp_path) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert _pretrain(image_folder, tmp_path, extra=["model.widths=[4, 16]"], resume=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match" in err[0] and "shape mismatch" in err[0]
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.root=/does/not/exist"], "data.root: /does/not/exist is not a folder"),
        (["--resume"], "--resume: no checkpoint"),
    ],
)
def test_bad_input_exits_2_with_one_line(image_folder, tmp_path, capsys, extra, message):
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def test_unwritable_output_dir_fails_before_training(image_folder, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [
        "pretrain",
        "-c",
        "configs/fashion_mnist/dae.yaml",
        *folder_overrides(image_folder, blocker / "sub"),
        "trainer.max_steps=100000",
    ]
    assert main(args) == 2
    assert "output_dir:" in capsys.readouterr().err


def test_corrupt_images_are_skipped_with_one_warning_per_epoch(image_folder, tmp_path, capsys):
    (image_folder / "class_0" / "broken.png").write_bytes(b"\x89PNG garbage")
    (image_folder / "class_2" / "empty.jpg").write_bytes(b"")
    # Every file read (both broken files would otherwise be left to the held-out test split or not, by path).
    extra = ["trainer.max_steps=100", "trainer.epochs=2", "trainer.batch_size=19", "data.pretrain_on_test=true"]
    assert _pretrain(image_folder, tmp_path, extra=extra) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2 and all("2 unreadable" in w for w in warnings)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["skipped_images"] == 4


def test_a_folder_of_only_broken_files_is_an_error(tmp_path, capsys):
    root = tmp_path / "broken"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_bytes(b"nope")
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(root, tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "data.root: none of the 3 image files" in err and "could be read" in err
    assert not (tmp_path / "out").exists()
