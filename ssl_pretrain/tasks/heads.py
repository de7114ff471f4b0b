"""Small classification heads shared by the pretext tasks."""

from __future__ import annotations

from torch import nn


def classifier_head(in_features: int, num_classes: int, hidden: int = 0) -> nn.Module:
    """Linear, or ``Linear-BN-ReLU-Linear`` when ``hidden > 0``. ``(N, in_features) -> (N, num_classes)``."""
    if hidden <= 0:
        return nn.Linear(in_features, num_classes)
    return nn.Sequential(
        nn.Linear(in_features, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


def accuracy(logits, targets):
    """Top-1 accuracy in [0, 1] as a detached scalar tensor."""
    return (logits.detach().argmax(dim=1) == targets).float().mean()
