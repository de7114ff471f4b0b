"""Small heads shared by the pretext tasks: classifiers, and the MLP projectors and predictors of the
view-based tasks."""

from __future__ import annotations

from torch import nn


def classifier_head(in_features: int, num_classes: int, hidden: int = 0) -> nn.Module:
    """Linear, or ``Linear-BN-ReLU-Linear`` when ``hidden > 0``. ``(N, in_features) -> (N, num_classes)``."""
    if hidden <= 0:
        return nn.Linear(in_features, num_classes)
    return mlp_head(in_features, hidden, num_classes, depth=2)


def mlp_head(in_features: int, hidden: int, out_features: int, depth: int = 2) -> nn.Sequential:
    """``depth - 1`` blocks of ``Linear-BN-ReLU`` at width ``hidden``, then a ``Linear`` to ``out_features``
    (BYOL's projector and predictor at depth 2; VICReg's expander at depth 3). ``(N, in) -> (N, out)``."""
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth - 1):
        layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def accuracy(logits, targets):
    """Top-1 accuracy in [0, 1] as a detached scalar tensor."""
    return (logits.detach().argmax(dim=1) == targets).float().mean()
