"""Semi-supervised fine-tuning (FixMatch, S4L pretext tasks): no label leaks, the losses, the options, the runs."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.config import load_config
from ssl_pretrain.data import DataInfo, open_split
from ssl_pretrain.data.sources import TensorImages
from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.errors import ConfigError
from ssl_pretrain.evaluation.finetuning.augment import strong_augmentation
from ssl_pretrain.evaluation.finetuning.study import pseudo_label_accuracy
from ssl_pretrain.evaluation.finetuning.unlabeled import unlabeled_batches, unlabeled_pool
from ssl_pretrain.evaluation.finetuning.unlabeled.fixmatch import fixmatch_loss
from ssl_pretrain.evaluation.finetuning.unlabeled.s4l import build_pretext, pretext_head_parameters, pretext_loss
from ssl_pretrain.evaluation.shared.classifier import ImageClassifier
from ssl_pretrain.evaluation.shared.splits import labeled_splits, validation_split
from ssl_pretrain.utils.files import safe_torch_load

from ...helpers import folder_overrides


def test_the_unlabeled_stream_carries_no_labels_and_no_validation_or_test_image(image_folder, tmp_path):
    config = load_config(None, folder_overrides(image_folder, tmp_path) + ["data.label_fraction=0.5"])
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    _, val = validation_split(train, 0.2, seed=0)
    everything = open_split(config.data, "train")
    pool = unlabeled_pool(everything, val)
    assert (pool.labels == -1).all() and not pool.has_labels
    assert not set(pool.files) & set(val.files) and not set(pool.files) & set(test.files)
    assert len(pool) == len(everything) - len(val), "every other training image, labeled ones included"
    batches = unlabeled_batches(pool, 8, seed=0, num_workers=0, pin_memory=False)
    for _ in range(6):  # more than one pass over the pool
        batch = next(batches)
        assert (batch.labels == -1).all()


def test_fixmatch_loss_keeps_confident_pseudo_labels_only():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    labeled, labels = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    weak, strong = torch.rand(6, 1, 4, 4), torch.rand(6, 1, 4, 4)
    loss, stats = fixmatch_loss(model, labeled, labels, weak, strong, threshold=0.4, weight=2.0)
    probs = model(weak).softmax(1)
    confident = probs.max(1).values >= 0.4
    expected_u = (F.cross_entropy(model(strong), probs.argmax(1), reduction="none") * confident).mean()
    torch.testing.assert_close(loss, F.cross_entropy(model(labeled), labels) + 2.0 * expected_u)
    assert stats["pseudo_label_rate"] == confident.float().mean()
    _, none_kept = fixmatch_loss(model, labeled, labels, weak, strong, threshold=0.999, weight=1.0)
    assert none_kept["pseudo_label_rate"] == 0 and none_kept["consistency_loss"] == 0
    # The pseudo-labels are targets: no gradient flows back through the weak view.
    model.zero_grad()
    weak_input = weak.clone().requires_grad_(True)
    fixmatch_loss(model, labeled, labels, weak_input, strong, 0.4, 1.0)[0].backward()
    assert weak_input.grad is None or not weak_input.grad.any()


def test_strong_augmentation_changes_every_image_on_the_device():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28)
    y = strong_augmentation()(x)
    assert y.shape == x.shape and y.device == x.device
    assert all(not torch.allclose(a, b) for a, b in zip(x, y, strict=True))


class _LogitsByCode(torch.nn.Module):
    """Logits looked up by the image's first pixel (its code, 0..255): a model whose every answer is known."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[(x[:, 0, 0, 0] * 255).round().long()]


def test_pseudo_label_study_counts_confident_right_kept_and_every_prediction():
    # (logits, true label): confident right x2, confident wrong, unconfident right x2, unconfident wrong x2.
    sure, unsure = 10.0, 0.5
    answers = [(0, sure, 0), (1, sure, 1), (0, sure, 3), (2, unsure, 2), (3, unsure, 3), (1, unsure, 0), (4, unsure, 2)]
    table = torch.zeros(len(answers), 5)
    for code, (predicted, logit, _) in enumerate(answers):
        table[code, predicted] = logit
    images = torch.zeros(len(answers), 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(answers), dtype=torch.uint8)
    study = TensorImages(images, torch.tensor([label for *_, label in answers]), "codes")
    model = _LogitsByCode(table).train()
    info = DataInfo(channels=1, image_size=2, mean=[0.0], std=[1.0])
    figures = pseudo_label_accuracy(model, study, info, torch.device("cpu"), threshold=0.9)
    assert figures["pseudo_label_coverage"] == pytest.approx(100 * 3 / 7)
    assert figures["pseudo_label_accuracy"] == pytest.approx(100 * 2 / 3)
    assert figures["prediction_accuracy"] == pytest.approx(100 * 4 / 7)
    assert model.training, "the model is handed back in the mode it came in"


@pytest.mark.parametrize(
    "override, key",
    [
        ("finetune.unlabeled.threshold=1.0", "finetune.unlabeled.threshold"),
        ("finetune.unlabeled.threshold=0", "finetune.unlabeled.threshold"),
        ("finetune.unlabeled.threshold=[0.9,1.5]", "finetune.unlabeled.threshold"),
        ("finetune.unlabeled.ratio=0", "finetune.unlabeled.ratio"),
        ("finetune.unlabeled.ratio=-2", "finetune.unlabeled.ratio"),
        ("finetune.unlabeled.weight=-1", "finetune.unlabeled.weight"),
        ("finetune.unlabeled.tasks=[]", "finetune.unlabeled.tasks"),  # S4L's option, not FixMatch's
        ("finetune.unlabeled=mixmatch", "finetune.unlabeled.method"),
        ("finetune.threshold=1.0", "finetune.unlabeled.threshold"),  # the old flat key, read as the new one
    ],
)
def test_bad_semi_supervised_options_are_exit_2_naming_the_key(image_folder, tmp_path, capsys, override, key):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    assert main(["finetune", f"evaluation.encoder={tmp_path / 'run'}", "finetune.unlabeled=fixmatch", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    notes = ["note: finetune.threshold is deprecated"] if override.startswith("finetune.threshold") else []
    assert len(err) == 1 + len(notes) and f"error: {key}:" in err[-1]
    assert all(note in line for note, line in zip(notes, err, strict=False))


def test_semi_supervised_run_logs_pseudo_labels_and_chooses_on_validation(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    common = ["finetune.unlabeled=fixmatch", "finetune.steps=6", "finetune.batch_size=8", "trainer.log_every=1"]
    common += ["trainer.progress=false", "finetune.unlabeled.ratio=2"]
    # All the labels: the unlabeled stream is then every training image outside the validation split.
    args = [
        "finetune",
        f"evaluation.encoder={run}",
        "finetune.unlabeled.threshold=[0.3,0.9]",
        "finetune.name=semi",
        *common,
    ]
    assert main([*args, "finetune.pseudo_label_accuracy=true"]) == 0
    assert "(study only)" in capsys.readouterr().out, "the command's summary names the last pseudo-label check"
    out = run / "finetune" / "semi"
    report = json.loads((out / "finetune.json").read_text())
    assert [c["threshold"] for c in report["selected"]["candidates"]] == [0.3, 0.9]
    semi = report["protocol"]["semi_supervised"]
    assert semi["threshold"] == report["selected"]["chosen"]["threshold"] and semi["ratio"] == 2
    tb = out / "candidates" / "threshold0.3" / "tb"
    tags = EventAccumulator(str(tb)).Reload().Tags()["scalars"]
    assert {"unlabeled/pseudo_label_rate", "unlabeled/confidence", "study/pseudo_label_accuracy"} <= set(tags)
    study = report["diagnostics"]["pseudo_label_study"]  # the chosen candidate's, every validated epoch
    epochs, every = report["protocol"]["epochs"], report["protocol"]["val_every"]
    assert [row["epoch"] for row in study] == [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]
    assert set(study[-1]) == {"epoch", "pseudo_label_accuracy", "pseudo_label_coverage", "prediction_accuracy"}
    # The study-only check changes nothing in training: the same run without it ends with the same weights.
    plain = [
        "finetune",
        f"evaluation.encoder={run}",
        "finetune.unlabeled.threshold=[0.3,0.9]",
        "finetune.name=plain",
        *common,
    ]
    assert main(plain) == 0
    tags = EventAccumulator(str(run / "finetune" / "plain" / "candidates" / "threshold0.3" / "tb")).Reload()
    assert not any(t.startswith("study/") for t in tags.Tags()["scalars"])
    plain_report = json.loads((run / "finetune" / "plain" / "finetune.json").read_text())
    assert "pseudo_label_study" not in plain_report["diagnostics"]
    with_study = safe_torch_load(out / "checkpoints" / "last.pt")["classifier"]["encoder"]
    without = safe_torch_load(run / "finetune" / "plain" / "checkpoints" / "last.pt")["classifier"]["encoder"]
    assert all(torch.equal(value, without[key]) for key, value in with_study.items())


def _tiny_classifier() -> ImageClassifier:
    encoder = build_encoder("small_resnet", {"widths": [4, 8, 8]}, 1, 16, [0.5], [0.25])
    return ImageClassifier(encoder, 3, 1, 16)


def test_pretext_loss_is_supervised_plus_weighted_pretext_on_labeled_and_unlabeled_images():
    torch.manual_seed(0)
    model = _tiny_classifier()
    entries = [{"name": "rotation", "weight": 0.5, "mode": "all", "head_hidden": 0}]
    task = build_pretext(entries, model.encoder, pool_size=100, seed=0)
    assert task.encoder is model.encoder, "the pretext heads read the classifier's own encoder, not a copy"
    heads = pretext_head_parameters(task)
    assert heads and not {id(p) for p in heads} & {id(p) for p in model.parameters()}
    labeled, labels, unlabeled = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 0]), torch.rand(6, 1, 16, 16)
    loss, stats = pretext_loss(model, task, labeled, labels, unlabeled, weight=2.0)
    # mode=all: each of the 4 + 6 images in all four rotations, so the pretext batch is known exactly.
    images = torch.cat([labeled, unlabeled])
    inputs, targets = task.make_batch(images, torch.arange(10))
    targets = targets["rotation"]
    assert len(targets) == 40 and torch.equal(targets.bincount(), torch.full((4,), 10))
    rotation = F.cross_entropy(task(inputs)["rotation"], targets)
    expected = F.cross_entropy(model(labeled), labels) + 2.0 * 0.5 * rotation
    torch.testing.assert_close(loss, expected)
    assert {"supervised_loss", "pretext_loss", "pretext/rotation/accuracy"} <= set(stats)
    loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in heads), "the pretext heads learn"
    assert model.head.weight.grad.any() and any(p.grad.any() for p in model.encoder.parameters())


def test_pretext_refuses_a_task_with_a_momentum_teacher_that_fine_tuning_would_never_move():
    entries = [{"name": "byol", "weight": 1.0, "projection_dim": 16}]
    with pytest.raises(ConfigError, match=r"finetune\.unlabeled\.tasks\[0\].*momentum teacher"):
        build_pretext(entries, _tiny_classifier().encoder, pool_size=100, seed=0)


def test_pretext_refuses_a_task_that_trains_on_a_subset_of_the_images():
    entries = [{"name": "exemplar", "weight": 1.0, "num_seeds": 8, "loss": "classifier"}]
    with pytest.raises(ConfigError, match=r"finetune\.unlabeled\.tasks\[0\]"):
        build_pretext(entries, _tiny_classifier().encoder, pool_size=100, seed=0)


@pytest.mark.parametrize(
    "override, key",
    [
        ("finetune.unlabeled.tasks=[{name: jigsaw}]", "finetune.unlabeled.tasks[0].name"),
        ("finetune.unlabeled.tasks=[{name: rotation, weight: 0}]", "finetune.unlabeled.tasks[0].weight"),
        ("finetune.unlabeled.tasks=[{name: rotation, level: 3}]", "finetune.unlabeled.tasks[0].level"),
        ("finetune.unlabeled.tasks=[{name: multi}]", "finetune.unlabeled.tasks[0].name"),
        ("finetune.unlabeled.tasks=[]", "finetune.unlabeled.tasks"),
        ("finetune.unlabeled.tasks=[{name: exemplar, num_seeds: 8, loss: classifier}]", "finetune.unlabeled.tasks[0]"),
    ],
)
def test_bad_pretext_options_are_exit_2_naming_the_key_and_write_nothing(image_folder, tmp_path, capsys, override, key):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    args = ["finetune", f"evaluation.encoder={tmp_path / 'run'}", "finetune.unlabeled=pretext", override]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"error: {key}:" in err[0]
    assert not (tmp_path / "run" / "finetune").exists()


def test_pretext_run_logs_every_task_and_trains_the_encoder_with_it(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    common = ["finetune.steps=4", "finetune.batch_size=8", "trainer.log_every=1", "trainer.progress=false"]
    s4l = ["finetune.unlabeled=pretext", "finetune.unlabeled.ratio=[1,2]"]
    s4l += ["finetune.unlabeled.tasks=[{name: rotation, weight: 1.0}, {name: relative_patch, weight: 0.5}]"]
    assert main(["finetune", f"evaluation.encoder={run}", "finetune.name=s4l", *common, *s4l]) == 0
    out = run / "finetune" / "s4l"
    report = json.loads((out / "finetune.json").read_text())
    # The threshold is FixMatch's alone: the candidates are the unlabeled ratios only.
    candidates = report["selected"]["candidates"]
    assert [c["ratio"] for c in candidates] == [1.0, 2.0] and not any("threshold" in c for c in candidates)
    semi = report["protocol"]["semi_supervised"]
    assert semi["method"].startswith("S4L") and "threshold" not in semi
    assert [t["name"] for t in semi["pretext"]] == ["rotation", "relative_patch"]
    tb = out / "candidates" / "ratio1" / "tb"
    tags = set(EventAccumulator(str(tb)).Reload().Tags()["scalars"])
    expected = ["pretext_loss", "pretext/rotation/accuracy", "pretext/relative_patch/loss", "supervised_loss"]
    assert {f"unlabeled/{name}" for name in expected} <= tags
    # The pretext loss reaches the encoder: the same run without it ends with other weights.
    plain = ["finetune", f"evaluation.encoder={run}", "finetune.name=plain", *common]
    assert main(plain) == 0
    with_pretext = safe_torch_load(out / "candidates" / "ratio1" / "checkpoints" / "last.pt")
    without = safe_torch_load(run / "finetune" / "plain" / "checkpoints" / "last.pt")
    encoders = with_pretext["classifier"]["encoder"], without["classifier"]["encoder"]
    assert any(not torch.equal(value, encoders[1][key]) for key, value in encoders[0].items())


def test_the_documented_semi_supervised_method_is_one_class_and_one_registration(image_folder, tmp_path):
    """docs/evaluation.md's Pi-model example, run as written: registered, configured, chosen on validation."""
    from ssl_pretrain.registry import UNLABELED_METHODS

    docs = (Path(__file__).parents[3] / "docs" / "evaluation.md").read_text()
    section = docs[docs.index("### Adding a semi-supervised method") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    exec(compile(code, "docs/evaluation.md", "exec"), {})
    try:
        assert (
            main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
        )
        run = tmp_path / "run"
        args = [
            "finetune",
            f"evaluation.encoder={run}",
            "finetune.unlabeled.ratio=[1,2]",
            "finetune.unlabeled=pi_model",
        ]
        args += ["finetune.steps=3", "finetune.batch_size=8", "trainer.log_every=1", "trainer.progress=false"]
        assert main([*args, "finetune.name=pi"]) == 0
        report = json.loads((run / "finetune" / "pi" / "finetune.json").read_text())
        assert [c["ratio"] for c in report["selected"]["candidates"]] == [1.0, 2.0]
        assert report["protocol"]["semi_supervised"]["method"].startswith("Pi-model")
        tags = EventAccumulator(str(run / "finetune" / "pi" / "candidates" / "ratio1" / "tb")).Reload()
        assert "unlabeled/consistency" in tags.Tags()["scalars"]
        assert main([*args, "finetune.name=bad", "finetune.unlabeled.threshold=0.9"]) == 2  # not its option
    finally:
        UNLABELED_METHODS.unregister("pi_model")
