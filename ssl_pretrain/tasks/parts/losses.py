"""Losses the view-based tasks share: contrastive (NT-Xent with several positives), BYOL's normalised
regression, VICReg's variance-invariance-covariance terms. Embeddings come per sample, ``(B, V, d)``: the views
of sample ``i`` in row ``i``, the global views first."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_positive_nt_xent(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float):
    """Contrastive loss where every other sample with the same label is a positive.

    Args:
        embeddings: ``(M, d)``, normalised inside.
        labels: ``(M,)``; every label must occur at least twice.

    Returns:
        (loss, accuracy): mean over anchors of ``-mean log p(positive)``; share of anchors whose
        most similar other sample is a positive.
    """
    z = F.normalize(embeddings, dim=1)
    similarity = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = (similarity - similarity.logsumexp(dim=1, keepdim=True)).masked_fill(self_mask, 0.0)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    loss = -(log_prob * positives).sum(1) / positives.sum(1).clamp_min(1)
    nearest = similarity.argmax(dim=1)
    return loss.mean(), (labels[nearest] == labels).float().mean().detach()


def mean_over_pairs(values: torch.Tensor) -> torch.Tensor:
    """``(B, V, G)`` values of (sample, view, global view) -> their mean over samples and over the pairs a
    view-matching loss compares: every view with every global view but itself. (A mask product, not boolean
    indexing, which would make the host wait for the device.)"""
    _, views, global_views = values.shape
    others = 1 - torch.eye(views, global_views, dtype=values.dtype, device=values.device)
    return (values * others).sum(dim=(1, 2)).mean() / (views * global_views - min(views, global_views))


def byol_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BYOL (Grill et al. 2020): ``2 - 2 cos(p_v, z_g)`` averaged over samples and over every view ``v`` paired
    with every other global view ``g``.

    Args:
        predictions: ``(B, V, d)`` the student's predictions of every view (global views first).
        targets: ``(B, G, d)`` the teacher's projections of the global views (no gradient).
    """
    cosine = torch.einsum("bvd,bgd->bvg", F.normalize(predictions, dim=-1), F.normalize(targets, dim=-1))
    return mean_over_pairs(2 - 2 * cosine)


def variance_term(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``(N, d)`` -> hinge on each dimension's standard deviation over the batch falling below 1."""
    return F.relu(1 - (z.var(dim=0) + eps).sqrt()).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """``(N, d)`` -> squared off-diagonal covariances over the batch, summed and divided by ``d``."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / max(1, n - 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


def vicreg_terms(embeddings: torch.Tensor, global_views: int) -> dict[str, torch.Tensor]:
    """VICReg (Bardes et al. 2022) on ``(B, V, d)`` embeddings: ``invariance`` (mean squared distance between
    each view and every other global view), ``variance`` and ``covariance`` (each view's own batch, averaged
    over views and doubled: with two views, the paper's sum over its two branches)."""
    difference = embeddings[:, :, None, :] - embeddings[:, None, :global_views, :]  # (B, V, G, d)
    invariance = mean_over_pairs(difference.pow(2).mean(dim=-1))
    views = embeddings.float().unbind(dim=1)
    variance = 2 * torch.stack([variance_term(z) for z in views]).mean()
    covariance = 2 * torch.stack([covariance_term(z) for z in views]).mean()
    return {"invariance": invariance, "variance": variance, "covariance": covariance}
