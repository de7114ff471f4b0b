"""Label-free gauges of a set of embeddings: how many dimensions they really use, and how spread they are."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): the effective rank of ``(N, D)`` embeddings, ``exp`` of the entropy of
    their normalised singular values, in ``[1, min(N, D)]``; 1 when every embedding is the same direction."""
    singular = torch.linalg.svdvals(features.double())
    share = singular / singular.sum().clamp_min(eps) + eps
    return float(torch.exp(-(share * share.log()).sum()))


def normalised_std(features: torch.Tensor) -> float:
    """Per-dimension standard deviation of the L2-normalised ``(N, D)`` embeddings, averaged over dimensions
    and multiplied by ``sqrt(D)``: about 1 for embeddings spread evenly on the sphere, 0 when all are equal
    (the collapse measure of Chen & He 2021, made independent of ``D``)."""
    z = F.normalize(features.double(), dim=1)
    return float(z.std(dim=0).mean() * z.shape[1] ** 0.5)
