"""``ssl-pretrain knn``: weighted k-nearest-neighbour classification on frozen, L2-normalised features.

Each test sample votes with its ``k`` most cosine-similar training samples, weighted by
``exp(similarity / temperature)`` (Wu et al. 2018). Similarities are computed ``chunk_size`` test
samples at a time, so memory is ``chunk_size x N_train`` floats: 512 x 60k is 123 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...config import Config, listed
from ..shared.reports import FrozenReport
from .probe import evaluate_frozen, fit_device


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
    device = train_x.device
    train = F.normalize(train_x.float(), dim=1)
    train_y = train_y.to(device)
    k = min(k, len(train))
    predictions = [torch.zeros(0, dtype=torch.long)]  # no query: no prediction
    for start in range(0, len(test_x), chunk_size):
        query = F.normalize(test_x[start : start + chunk_size].to(device).float(), dim=1)
        similarity, nearest = (query @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(query), num_classes, dtype=torch.float64, device=device)
        votes.scatter_add_(1, train_y[nearest], (similarity.double() / temperature).exp())
        predictions.append(votes.argmax(dim=1).cpu())
    return torch.cat(predictions)


@dataclass
class KnnMethod:
    """Weighted kNN as a :class:`~.frozen.FrozenMethod`: one candidate per ``k``; fitting keeps the features."""

    k: list[int]
    temperature: float = 0.07
    chunk_size: int = 512
    reports_train_top1: bool = False
    device: torch.device | None = None

    def settings(self) -> list[dict]:
        return [{"k": k} for k in self.k]

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, setting: dict) -> tuple:
        if self.device is not None:  # similarities computed there, chunk by chunk
            x, y = x.to(self.device), y.to(self.device)
        return x, y, num_classes, setting["k"]

    def predict(self, fitted: tuple, x: torch.Tensor) -> torch.Tensor:
        train_x, train_y, num_classes, k = fitted
        return weighted_knn_predict(train_x, train_y, x, num_classes, k, self.temperature, self.chunk_size)


def run_knn(config: Config, device: torch.device) -> FrozenReport:
    """kNN on ``evaluation.encoder`` (and the controls of ``evaluation.control``); writes ``knn.json``; ``k`` chosen
    on validation when ``knn.k`` lists several."""
    knn = config.knn
    method = KnnMethod(listed(knn.k), knn.temperature, knn.chunk_size, device=fit_device(config.device))
    protocol = {
        "classifier": "weighted kNN, cosine similarity on L2-normalised features, votes exp(sim / T)",
        "k": knn.k,
        "temperature": knn.temperature,
    }
    return evaluate_frozen(config, device, "knn", method, protocol)
