"""Ensemble rules on hand-made predictions, and the ensemble command on fine-tuned and probed members."""

import json

import pytest
import torch

from ssl_pretrain.cli import main
from ssl_pretrain.evaluation.extras.voting import (
    accuracy_weights,
    fit_stacking,
    hard_vote,
    soft_vote,
    stacking_features,
)

from ...helpers import folder_overrides


def _one_hot_probs(predictions, classes=3, confidence=0.8):
    """(M, N) predicted classes -> (M, N, K) probabilities with ``confidence`` on the prediction."""
    preds = torch.tensor(predictions)
    probs = torch.full((*preds.shape, classes), (1 - confidence) / (classes - 1))
    return probs.scatter(2, preds.unsqueeze(2), confidence)


def test_hard_vote_takes_the_majority_and_breaks_ties_to_the_lowest_class():
    probs = _one_hot_probs([[0, 1, 2, 2], [0, 1, 1, 0], [1, 1, 2, 1]])
    # sample 0: 0,0,1 -> 0; sample 1: 1,1,1 -> 1; sample 2: 2,1,2 -> 2; sample 3: 2,0,1 tie -> 0
    assert hard_vote(probs).tolist() == [0, 1, 2, 0]
    # weights make the third member decide the tie of sample 3 (and outvote the two others nowhere else)
    assert hard_vote(probs, torch.tensor([1.0, 1.0, 1.5])).tolist() == [0, 1, 2, 1]


def test_soft_vote_lets_one_confident_member_beat_two_hesitant_ones():
    probs = torch.tensor(
        [
            [[0.45, 0.55]],  # hesitant: class 1
            [[0.45, 0.55]],  # hesitant: class 1
            [[0.95, 0.05]],  # confident: class 0
        ]
    )
    assert hard_vote(probs).tolist() == [1]
    assert soft_vote(probs).tolist() == [0]  # mean: 0.617 vs 0.383
    # weighted: the confident member down-weighted to 0.1 -> class 1 wins again
    assert soft_vote(probs, torch.tensor([1.0, 1.0, 0.1])).tolist() == [1]


def test_weights_from_validation_accuracy_are_proportional():
    weights = accuracy_weights([90.0, 60.0, 30.0])
    assert weights.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6])


def test_stacking_learns_which_member_to_trust():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    good = _one_hot_probs([labels.tolist()])[0]  # always right
    noise = _one_hot_probs([torch.randint(0, 3, (300,)).tolist()])[0]  # random
    probs = torch.stack([noise, noise.roll(1, 0), good])  # the good member is outvoted by hard voting
    head = fit_stacking(probs, labels)
    assert (head.predict(stacking_features(probs)) == labels).float().mean() == 1.0
    assert stacking_features(probs).shape == (300, 9)


def test_ensemble_command_combines_finetuned_and_probed_members(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    common = ["finetune.epochs=1", "finetune.batch_size=8", "trainer.progress=false"]
    assert main(["finetune", f"evaluation.encoder={run}", "finetune.name=a", *common]) == 0
    assert main(["finetune", f"evaluation.encoder={run}", "finetune.name=b", "finetune.freeze_until=all", *common]) == 0
    assert main(["probe", f"evaluation.encoder={run}"]) == 0
    members = [run / "finetune" / "a", run / "finetune" / "b" / "checkpoints" / "best.pt", run / "probe_classifier.pt"]
    out = tmp_path / "ens"
    for method in ("hard", "soft", "weighted", "stacking"):
        args = [
            "ensemble",
            f"ensemble.members=[{','.join(map(str, members))}]",
            f"ensemble.method={method}",
            f"ensemble.output={out}",
        ]
        assert main(args) == 0
        report = json.loads((out / f"ensemble-{method}.json").read_text())
        assert len(report["members"]) == 3 and 0 <= report["ensemble_top1"] <= 100
        assert 0 <= report["ensemble_val_top1"] <= 100, "the ensemble's own validation score is recorded"
    assert [m["member_saw_validation"] for m in report["members"]] == [False, False, True]
    weighted = json.loads((out / "ensemble-weighted.json").read_text())["protocol"]
    assert weighted["weights_from"] == "validation top-1" and sum(weighted["weights"]) == pytest.approx(1.0, abs=1e-3)
    assert (out / "stacking_head.pt").is_file()
    assert "ensemble (stacking)" in capsys.readouterr().out


def test_ensemble_needs_two_members(image_folder, tmp_path, capsys):
    args = ["ensemble", "-c", "configs/fashion_mnist/dae.yaml", "ensemble.members=[x]"]
    assert main(args) == 2
    assert "ensemble.members" in capsys.readouterr().err
