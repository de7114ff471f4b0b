"""Ensemble combination rules on member outputs: probabilities ``(M, N, K)`` of M members, N samples, K classes.

- hard: each member votes for its top class (optionally weighted); ties go to the lowest class index;
- soft: the mean of the members' probabilities;
- weighted: probabilities averaged with weights (given, or the members' validation top-1);
- stacking: a logistic regression trained on the members' log-probabilities of a validation split.
"""

from __future__ import annotations

import torch

from ..features.logistic import LinearClassifier, fit_logistic_regression


def hard_vote(probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Predicted classes ``(N,)`` by (weighted) majority of the members' top classes."""
    members, _, classes = probs.shape
    weights = torch.ones(members, dtype=torch.float64) if weights is None else weights.double()
    votes = torch.zeros(probs.shape[1], classes, dtype=torch.float64)
    for m in range(members):
        votes.scatter_add_(1, probs[m].argmax(dim=1, keepdim=True), weights[m].expand(probs.shape[1], 1))
    top = votes.max(dim=1, keepdim=True).values
    return (votes == top).double().argmax(dim=1)  # first (lowest) class among the tied


def soft_vote(probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Predicted classes ``(N,)`` from the (weighted) mean of the members' probabilities."""
    if weights is None:
        return probs.mean(dim=0).argmax(dim=1)
    weights = weights.to(probs.dtype) / weights.sum()
    return torch.einsum("m,mnk->nk", weights, probs).argmax(dim=1)


def accuracy_weights(val_top1: list[float]) -> torch.Tensor:
    """Weights proportional to the members' validation top-1."""
    weights = torch.tensor(val_top1, dtype=torch.float64)
    return weights / weights.sum()


def stacking_features(probs: torch.Tensor) -> torch.Tensor:
    """``(M, N, K)`` probabilities -> ``(N, M*K)`` log-probabilities, the stacking head's input."""
    return probs.clamp_min(1e-8).log().permute(1, 0, 2).flatten(1)


def fit_stacking(val_probs: torch.Tensor, val_labels: torch.Tensor, l2: float = 1e-3) -> LinearClassifier:
    """The stacking head: multinomial logistic regression on the members' validation log-probabilities."""
    return fit_logistic_regression(stacking_features(val_probs), val_labels, val_probs.shape[2], l2=l2)
