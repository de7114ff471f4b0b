"""``ssl-pretrain knn``: weighted k-nearest-neighbour classification on frozen, L2-normalised features.

Each test sample votes with its ``k`` most cosine-similar training samples, weighted by
``exp(similarity / temperature)`` (Wu et al. 2018). Similarities are computed ``chunk_size`` test
samples at a time, so memory is ``chunk_size x N_train`` floats: 512 x 60k is 123 MB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Config
from .metrics import percent_correct
from .probe import evaluate_frozen


def weighted_knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 512,
) -> torch.Tensor:
    """Predicted labels ``(N_test,)`` for ``test_x (N_test, D)`` from ``train_x (N, D)``, ``train_y (N,)``."""
    train = F.normalize(train_x.float(), dim=1)
    k = min(k, len(train))
    predictions = []
    for start in range(0, len(test_x), chunk_size):
        query = F.normalize(test_x[start : start + chunk_size].float(), dim=1)
        similarity, nearest = (query @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(query), num_classes, dtype=torch.float64)
        votes.scatter_add_(1, train_y[nearest], (similarity.double() / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_top1(train_x, train_y, test_x, test_y, num_classes: int, config: Config) -> dict:
    """Test top-1 in percent of weighted kNN with the ``knn.*`` settings."""
    knn = config.knn
    predicted = weighted_knn_predict(train_x, train_y, test_x, num_classes, knn.k, knn.temperature, knn.chunk_size)
    return {"top1": percent_correct(predicted, test_y)}


def run_knn(config: Config) -> dict:
    """kNN on ``probe.encoder`` (and the controls of ``probe.control``); writes ``knn.json``."""
    protocol = {
        "classifier": "weighted kNN, cosine similarity on L2-normalised features, votes exp(sim / T)",
        "k": config.knn.k,
        "temperature": config.knn.temperature,
    }
    return evaluate_frozen(config, "knn", knn_top1, protocol)
