"""Weighted kNN on frozen features: against a brute-force reference, and through the CLI."""

import json
import math

import pytest
import torch

from ssl_pretrain.cli import main
from ssl_pretrain.evaluation.frozen.knn import weighted_knn_predict

from ...helpers import folder_overrides


def _reference(train_x, train_y, test_x, num_classes, k, temperature):
    """One test sample at a time: sort all cosine similarities, let the top k vote."""
    predictions = []
    for q in test_x:
        sims = [float(q @ t / (q.norm() * t.norm())) for t in train_x]
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(train_y[i])] += math.exp(sims[i] / temperature)
        predictions.append(max(range(num_classes), key=votes.__getitem__))
    return torch.tensor(predictions)


@pytest.mark.parametrize("k,temperature,chunk", [(1, 0.1, 7), (5, 0.07, 3), (20, 0.5, 100), (500, 1.0, 16)])
def test_weighted_knn_matches_a_brute_force_reference(k, temperature, chunk):
    torch.manual_seed(0)
    centres = torch.randn(4, 6) * 2
    train_y = torch.randint(0, 4, (80,))
    train_x = centres[train_y] + torch.randn(80, 6)
    test_x = centres[torch.randint(0, 4, (30,))] + torch.randn(30, 6)
    predicted = weighted_knn_predict(train_x, train_y, test_x, 4, k, temperature, chunk)
    assert torch.equal(predicted, _reference(train_x, train_y, test_x, 4, min(k, 80), temperature))


def test_votes_are_weighted_by_similarity_not_counted():
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    train_y = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])
    # Two neighbours of class 1 against one much closer neighbour of class 0.
    assert weighted_knn_predict(train_x, train_y, query, 2, k=3, temperature=0.1).item() == 0
    assert weighted_knn_predict(train_x, train_y, query, 2, k=3, temperature=100.0).item() == 1


def test_knn_command_writes_knn_json_with_its_protocol(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    assert main(["knn", f"evaluation.encoder={run}", "knn.k=5", "evaluation.control=all"]) == 0
    report = json.loads((run / "knn.json").read_text())
    assert [r["encoder"] for r in report["results"]] == ["pretrained", "random_init", "raw_pixels"]
    assert report["protocol"]["k"] == 5 and report["protocol"]["temperature"] == 0.07
    assert all(0 <= r["top1"] <= 100 for r in report["results"])
    assert "knn.json written" in capsys.readouterr().out
    assert main(["knn", f"evaluation.encoder={run}", "knn.k=0"]) == 2
