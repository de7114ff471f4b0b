"""Every choice on validation, the test set scored once: layers, L2, k, fine-tuning epoch and learning rate."""

import json

import pytest
import torch
from torch import nn

from ssl_pretrain.cli import main
from ssl_pretrain.data import DataInfo
from ssl_pretrain.data.sources import TensorImages
from ssl_pretrain.evaluation.frozen import evaluate_encoder
from ssl_pretrain.evaluation.knn import KnnMethod
from ssl_pretrain.evaluation.logistic import LogisticProbe
from ssl_pretrain.evaluation.selection import Selection, first_best
from ssl_pretrain.evaluation.splits import stratified_split

from ..helpers import folder_overrides

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
    assert "test_top1_last_epoch" in report["diagnostics"] and "test_top1" in report
