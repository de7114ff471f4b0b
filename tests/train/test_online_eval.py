"""Online evaluation during pretraining: logged to TensorBoard, and the pretraining result unchanged."""

import json
import shutil

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main

from ..helpers import folder_overrides


def _pretrain(image_folder, tmp_path, name, extra=()):
    args = [
        "pretrain",
        "-c",
        "configs/fashion_mnist/exemplar.yaml",
        *folder_overrides(image_folder, tmp_path, name),
        "trainer.max_steps=4",
        "task.copies=2",
        *extra,
    ]
    assert main(args) == 0
    return tmp_path / name


def test_online_evaluation_logs_and_leaves_the_weights_bit_identical(image_folder, tmp_path):
    plain = _pretrain(image_folder, tmp_path, "plain")
    online = _pretrain(
        image_folder,
        tmp_path,
        "online",
        ["online.every=1", "online.unit=step", "online.method=both", "online.probe_iter=5"],
    )
    a = torch.load(plain / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(online / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    events = EventAccumulator(str(online / "tb")).Reload()
    assert [e.step for e in events.Scalars("online/knn_top1")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("online/probe_top1")] == [1, 2, 3, 4]
    metrics = json.loads((online / "metrics.json").read_text())
    assert 0 <= metrics["online_knn_top1"] <= 100 and "online_knn_top1" not in json.loads(
        (plain / "metrics.json").read_text()
    )


def test_online_evaluation_per_epoch(image_folder, tmp_path):
    # 29 images outside the held-out test split, batch 8 -> 3 steps an epoch; 6 steps = 2 epochs, evaluated after each.
    run = _pretrain(image_folder, tmp_path, "epochs", ["trainer.max_steps=6", "trainer.epochs=2", "online.every=1"])
    events = EventAccumulator(str(run / "tb")).Reload()
    assert [e.step for e in events.Scalars("online/knn_top1")] == [3, 6]


def test_online_evaluation_without_labels_fails_before_training(image_folder, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted(image_folder.rglob("*.png"))):
        shutil.copy(path, flat / f"{i}.png")
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(flat, tmp_path), "online.every=1"]
    assert main(args) == 2
    assert "online.every" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_online_evaluation_is_due_by_epoch_or_by_step():
    from types import SimpleNamespace

    from ssl_pretrain.train.online_eval import OnlineEvaluator

    evaluator = OnlineEvaluator.__new__(OnlineEvaluator)
    evaluator.cfg = SimpleNamespace(unit="epoch", every=2)
    assert [evaluator.due(0, e, epoch_ended=True) for e in (1, 2, 3, 4)] == [False, True, False, True]
    assert not evaluator.due(2, 2, epoch_ended=False)
    evaluator.cfg = SimpleNamespace(unit="step", every=3)
    assert [evaluator.due(s, 0, epoch_ended=False) for s in (2, 3, 6)] == [False, True, True]
    assert not evaluator.due(3, 1, epoch_ended=True)
