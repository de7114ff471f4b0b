"""Every choice on validation, the test set scored once: layers, L2, k, fine-tuning epoch and learning rate."""

import json

import pytest
import torch
from torch import nn

from ssl_pretrain.cli import main
from ssl_pretrain.data import DataInfo
from ssl_pretrain.data.sources import TensorImages
from ssl_pretrain.errors import ConfigError
from ssl_pretrain.evaluation.features.logistic import LogisticProbe
from ssl_pretrain.evaluation.features.method import evaluate_encoder
from ssl_pretrain.evaluation.frozen.knn import KnnMethod
from ssl_pretrain.evaluation.shared.selection import Selection, first_best
from ssl_pretrain.evaluation.shared.splits import stratified_folds, stratified_split, validation_folds

from ...helpers import folder_overrides

CPU = torch.device("cpu")
INFO = DataInfo(1, 2, [0.0], [1.0])


def _indexed_images(count: int) -> torch.Tensor:
    """``(N, 1, 2, 2)`` uint8 images that spell their own index (low byte, high byte)."""
    idx = torch.arange(count)
    images = torch.zeros(count, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = idx % 256, idx // 256
    return images


class LookupView(nn.Module):
    """A fake encoder view: each image's features per layer are looked up by the index it spells."""

    def __init__(self, tables: dict[str, torch.Tensor]):
        super().__init__()
        self.tables = tables

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = (x[:, 0, 0, 0] * 255).round().long() + 256 * (x[:, 0, 0, 1] * 255).round().long()
        return {name: table[idx] for name, table in self.tables.items()}

    def pooling_of(self, layer: str) -> str:
        return "lookup"


def _planted_problem(seed: int = 0):
    """Two layers: ``val_best`` separates the classes on the validation split only, ``test_best`` on the
    test split only (its validation features are flipped). The validation split is the one
    :func:`evaluate_encoder` draws, computed here the same way."""
    n_train, n_test = 40, 20
    train_y, test_y = torch.arange(n_train) % 2, torch.arange(n_test) % 2
    _, val_idx = stratified_split(train_y, 0.25, seed)
    signal = lambda y: (2.0 * y - 1).unsqueeze(1) * torch.tensor([[3.0, 3.0]])  # noqa: E731
    noise = lambda n: torch.randn(n, 2, generator=torch.Generator().manual_seed(n))  # noqa: E731
    val_best_train, test_best_train = signal(train_y), signal(train_y)
    test_best_train[val_idx] = -test_best_train[val_idx]  # validation images point the wrong way
    tables = {
        "val_best": torch.cat([val_best_train, noise(n_test)]),  # test features carry no signal
        "test_best": torch.cat([test_best_train, signal(test_y)]),
    }
    images = _indexed_images(n_train + n_test)
    train = TensorImages(images[:n_train], train_y, "train")
    test = TensorImages(images[n_train:], test_y, "test")
    return LookupView(tables), train, test


def test_first_best_breaks_ties_towards_the_first_candidate():
    assert first_best([1.0, 3.0, 3.0, 2.0]) == 1
    selection = Selection.from_scores([{"k": 5}, {"k": 10}], [80.0, 80.0], "val")
    assert selection.chosen == {"k": 5} and selection.val_top1 == 80.0
    with pytest.raises(ValueError):
        first_best([])


def test_the_layer_is_chosen_on_validation_even_when_another_tests_better():
    view, train, test = _planted_problem()
    rows, selection, _ = evaluate_encoder(
        "pretrained", view, train, test, INFO, CPU, LogisticProbe([1e-3]), val_fraction=0.25, batch_size=16
    )
    by_layer = {r["layer"]: r for r in rows}
    assert selection.chosen["layer"] == "val_best"
    assert by_layer["val_best"]["val_top1"] == 100.0 and by_layer["test_best"]["val_top1"] == 0.0
    # Only the choice is scored on the test set, and its (poor) test figure is what is reported.
    assert "top1" not in by_layer["test_best"] and by_layer["val_best"]["chosen"]
    assert selection.test_top1 == by_layer["val_best"]["top1"] < 80.0


def test_diagnostics_label_the_test_scores_of_unchosen_candidates():
    view, train, test = _planted_problem()
    rows, selection, _ = evaluate_encoder(
        "pretrained", view, train, test, INFO, CPU, LogisticProbe([1e-3]), val_fraction=0.25, diagnostics=True
    )
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["test_best"]["diagnostic_test_top1"] == 100.0  # shown, labelled, never chosen
    assert selection.chosen["layer"] == "val_best" and "diagnostic_test_top1" not in by_layer["val_best"]


def test_knn_k_is_chosen_on_validation():
    torch.manual_seed(0)
    # One tight cluster per class plus a few far points of the other class inside each: k=1 follows the
    # strays, a large k outvotes them.
    n = 60
    labels = torch.arange(n) % 2
    features = (2.0 * labels - 1).unsqueeze(1).repeat(1, 2) + 0.3 * torch.randn(n, 2)
    features[:6] = -features[:6]  # strays
    images = _indexed_images(n + 20)
    test_y = torch.arange(20) % 2
    table = torch.cat([features, (2.0 * test_y - 1).unsqueeze(1).repeat(1, 2) + 0.3 * torch.randn(20, 2)])
    view = LookupView({"pooled": table})
    train, test = TensorImages(images[:n], labels, "train"), TensorImages(images[n:], test_y, "test")
    rows, selection, _ = evaluate_encoder("x", view, train, test, INFO, CPU, KnnMethod([1, 15]), val_fraction=0.5)
    assert [r["k"] for r in rows] == [1, 15]
    assert selection.chosen["k"] == rows[first_best([r["val_top1"] for r in rows])]["k"]
    assert sum("top1" in r for r in rows) == 1


def test_probe_command_chooses_layer_and_l2_on_validation(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = ["probe", f"evaluation.encoder={run}", "probe.layers=[layer1,pooled]", "probe.layer_dim=64"]
    args += ["probe.l2=[1e-4,1e-1]", "evaluation.control=none"]
    assert main(args) == 0
    report = json.loads((run / "probe.json").read_text())
    rows = report["results"]
    assert [(r["layer"], r["l2"]) for r in rows] == [(la, l2) for la in ("layer1", "pooled") for l2 in (1e-4, 0.1)]
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and all("top1" not in r for r in rows if not r["chosen"])
    selected = report["selected"]["pretrained"]
    assert selected["chosen"] == {"layer": chosen[0]["layer"], "l2": chosen[0]["l2"]}
    assert selected["val_top1"] == max(r["val_top1"] for r in rows) and selected["test_top1"] == chosen[0]["top1"]
    # The same choice by 3-fold cross-validation: every labeled image scores every candidate once.
    assert main([*args, "evaluation.val_folds=3"]) == 0
    report = json.loads((run / "probe.json").read_text())
    assert report["protocol"]["val_folds"] == 3
    assert "3-fold cross-validation over the" in report["selected"]["pretrained"]["validation"]
    assert main([*args, "evaluation.val_folds=100000"]) == 2
    assert json.loads((run / "probe.json").read_text()) == report, "a failing probe leaves the last report alone"


def test_finetune_chooses_learning_rate_augmentation_and_epoch_on_validation(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    common = ["finetune.epochs=2", "finetune.batch_size=8", "trainer.progress=false", "finetune.name=grid"]
    assert (
        main(
            [
                "finetune",
                f"evaluation.encoder={run}",
                "finetune.lr=[1e-3,1e-1]",
                "finetune.augment=[flip,strong]",
                *common,
            ]
        )
        == 0
    )
    out = run / "finetune" / "grid"
    report = json.loads((out / "finetune.json").read_text())
    candidates = report["selected"]["candidates"]
    assert [(c["lr"], c["augment"]) for c in candidates] == [(lr, a) for lr in (1e-3, 0.1) for a in ("flip", "strong")]
    best = candidates[first_best([c["val_top1"] for c in candidates])]
    assert report["selected"]["chosen"] == {"lr": best["lr"], "augment": best["augment"], "epoch": best["epoch"]}
    assert report["protocol"]["augmentation"] == best["augment"]
    assert report["val_top1"] == best["val_top1"] == max(report["val_top1_per_epoch"])
    # The run's best.pt is the chosen candidate's.
    chosen_dir = out / "candidates" / f"lr{best['lr']:g}-augment-{best['augment']}"
    assert (out / "checkpoints" / "best.pt").read_bytes() == (chosen_dir / "checkpoints" / "best.pt").read_bytes()
    assert "test_top1_last_epoch" not in report["diagnostics"] and "test_top1" in report  # one test pass


def test_stratified_folds_partition_the_labels_evenly_per_class():
    labels = torch.tensor([0] * 13 + [1] * 7 + [2] * 10)
    folds = stratified_folds(labels, 5, seed=3)
    assert len(folds) == 5
    held = torch.cat([val for _, val in folds])
    assert sorted(held.tolist()) == list(range(len(labels)))  # every image validates exactly once
    for fit, val in folds:
        assert sorted(torch.cat([fit, val]).tolist()) == list(range(len(labels)))
        assert set(fit.tolist()).isdisjoint(val.tolist())
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1
    for cls, count in ((0, 13), (1, 7), (2, 10)):
        per_fold = [int((labels[val] == cls).sum()) for _, val in folds]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == count
    again = stratified_folds(labels, 5, seed=3)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(folds, stratified_folds(labels, 5, seed=4), strict=True))
    one = validation_folds(labels, 0.2, 1, seed=3)
    assert len(one) == 1 and torch.equal(one[0][1], stratified_split(labels, 0.2, 3)[1])


class CountingProbe(LogisticProbe):
    """The logistic probe, recording how many images every fit saw and every prediction scored."""

    def __init__(self, l2):
        super().__init__(l2)
        self.fit_sizes, self.predict_sizes = [], []

    def fit(self, x, y, num_classes, setting):
        self.fit_sizes.append(len(x))
        return super().fit(x, y, num_classes, setting)

    def predict(self, fitted, x):
        self.predict_sizes.append(len(x))
        return super().predict(fitted, x)


def test_cross_validation_scores_every_labeled_image_and_refits_on_all():
    view, train, test = _planted_problem()
    probe = CountingProbe([1e-3, 1e-1])
    rows, selection, _ = evaluate_encoder("pretrained", view, train, test, INFO, CPU, probe, val_folds=4, batch_size=16)
    # 2 layers x 2 settings x 4 folds, each fitted on 30 of the 40 labels and scored on the other 10; then
    # one refit of the choice on all 40, scored on the 20 test images and the 40 training images.
    assert probe.fit_sizes == [30] * 16 + [40]
    assert probe.predict_sizes == [10] * 16 + [20, 40]
    assert "4-fold cross-validation over the 40" in selection.validation
    # The planted layer is right on a quarter of the training images only (the hold-out it was built
    # around): cross-validation scores it over all of them and prefers the layer that is right everywhere.
    by_layer = {(r["layer"], r["l2"]): r for r in rows}
    assert by_layer[("val_best", 1e-3)]["val_top1"] == 100.0
    assert selection.chosen["layer"] == "val_best"
    manual = []
    for fit_idx, val_idx in stratified_folds(train.labels, 4, 0):
        features = view.tables["test_best"][fit_idx]
        fitted = LogisticProbe([1e-3]).fit(features, train.labels[fit_idx], 2, {"l2": 1e-3})
        manual.append(fitted.predict(view.tables["test_best"][val_idx]).eq(train.labels[val_idx]))
    assert by_layer[("test_best", 1e-3)]["val_top1"] == round(100.0 * torch.cat(manual).float().mean().item(), 2)


def test_more_folds_than_labels_is_a_config_error():
    view, train, test = _planted_problem()
    with pytest.raises(ConfigError, match="evaluation.val_folds"):
        evaluate_encoder("pretrained", view, train, test, INFO, CPU, LogisticProbe([1e-3, 1e-1]), val_folds=41)
