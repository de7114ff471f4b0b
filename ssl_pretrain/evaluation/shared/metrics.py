"""Accuracy, the one figure every evaluation reports."""

from __future__ import annotations

import torch


def percent_correct(predicted: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Top-1 in percent of predicted classes ``(N,)`` against ``labels (N,)``, rounded to 2 decimals; None for
    no image (a validation split too few labels left empty)."""
    if len(labels) == 0:
        return None
    return round(100.0 * (predicted == labels).float().mean().item(), 2)
