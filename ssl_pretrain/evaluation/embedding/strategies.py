"""Which images to label: five ways to choose ``budget`` rows of a collection's embeddings, given the rows
already labeled (``labeled (N,)`` bool; a next round adds to them).

- ``typiclust`` (Hacohen et al. 2022): k-means with min(labeled + budget, ``max_clusters``) clusters; clusters
  under ``min_cluster_size`` are left out; each pick is the most typical row (inverse mean distance to its
  ``neighbours`` nearest rows of the cluster) of the largest cluster with the fewest labeled rows.
- ``probcover`` (Yehuda et al. 2022): the largest ball radius whose balls are ``purity`` pure on k-means
  pseudo-labels (``clusters`` of them), then greedy: each pick the row whose ball covers the most rows not yet
  covered (the labeled rows' balls count as covered).
- ``kmeans``: labeled + budget clusters; the row nearest the centre of each cluster with no labeled row,
  largest clusters first.
- ``kcenter`` (core-set, Sener & Savarese 2018): farthest-first, each pick the row farthest from every labeled
  or picked row.
- ``random``: uniformly among the unlabeled rows.

Distances are cosine (rows centred and L2-normalised). Every strategy is deterministic for a ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import BadInput
from .clusters import UnitVectors, spherical_kmeans
from .coverage import greedy_cover


@dataclass(frozen=True)
class SelectOptions:
    """The strategies' settings (``select.*``)."""

    max_clusters: int = 500
    min_cluster_size: int = 5
    neighbours: int = 20
    clusters: int = 10
    purity: float = 0.95
    iterations: int = 20
    typicality_sample: int = 10000


@dataclass
class Picks:
    """The rows chosen, in order, each with its cluster (-1: none) and typicality (NaN: not computed), and what
    the strategy reports (``details``: probcover's radius)."""

    rows: list[int]
    clusters: list[int]
    typicality: list[float]
    details: dict = field(default_factory=dict)


def random_picks(vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options: SelectOptions) -> Picks:
    free = (~labeled).nonzero().flatten()
    rows = free[torch.randperm(len(free), generator=torch.Generator().manual_seed(seed))[:budget]].tolist()
    return Picks(rows, [-1] * len(rows), [float("nan")] * len(rows))


def kmeans_picks(vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options: SelectOptions) -> Picks:
    k = int(labeled.sum()) + budget
    _, assignment, similarity = spherical_kmeans(vectors, k, seed, options.iterations)
    sizes = torch.bincount(assignment, minlength=k)
    has_labeled = torch.bincount(assignment[labeled], minlength=k) > 0
    rows, clusters = [], []
    for cluster in sorted(range(k), key=lambda c: (bool(has_labeled[c]), -int(sizes[c]), c)):
        members = ((assignment == cluster) & ~labeled).nonzero().flatten()
        if len(members) and len(rows) < budget:
            rows.append(int(members[similarity[members].argmax()]))
            clusters.append(cluster)
    return Picks(rows, clusters, [float("nan")] * len(rows))


def typicality(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(n,)`` inverse mean Euclidean distance of each unit row of ``x (n, D)`` to its ``k`` nearest others."""
    if len(x) < 2:
        return torch.ones(len(x))
    distances = torch.cdist(x, x)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.topk(min(k, len(x) - 1), dim=1, largest=False).values
    return 1 / (nearest.mean(dim=1) + 1e-8)


def typiclust_picks(
    vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options: SelectOptions
) -> Picks:
    k = min(int(labeled.sum()) + budget, options.max_clusters)
    _, assignment, _ = spherical_kmeans(vectors, k, seed, options.iterations)
    sizes = torch.bincount(assignment, minlength=k)
    taken = torch.bincount(assignment[labeled], minlength=k)
    eligible = sizes >= options.min_cluster_size
    if not eligible.any():
        eligible = sizes > 0
    free = ~labeled
    unpicked = torch.bincount(assignment[free], minlength=k)  # each cluster's rows neither labeled nor picked
    generator = torch.Generator().manual_seed(seed)
    picks = Picks([], [], [])
    while len(picks.rows) < budget:
        open_clusters = (eligible & (unpicked > 0)).nonzero().flatten().tolist()
        if not open_clusters:
            break
        cluster = min(open_clusters, key=lambda c: (int(taken[c]), -int(sizes[c]), c))
        members = (assignment == cluster).nonzero().flatten()
        if len(members) > options.typicality_sample:
            members = members[torch.randperm(len(members), generator=generator)[: options.typicality_sample]]
        scores = typicality(vectors.take(members), options.neighbours)
        scores[~free[members]] = -1.0  # a labeled or picked row is typical but not picked again
        best = int(scores.argmax())
        row = int(members[best])
        picks.rows.append(row)
        picks.clusters.append(cluster)
        picks.typicality.append(float(scores[best]))
        free[row], taken[cluster], unpicked[cluster] = False, taken[cluster] + 1, unpicked[cluster] - 1
    return picks


def kcenter_picks(vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options: SelectOptions) -> Picks:
    nearest = torch.full((len(vectors),), float("inf"))
    for row in labeled.nonzero().flatten().tolist():
        _update_nearest(vectors, nearest, row)
    rows = []
    if not labeled.any():
        rows.append(int(torch.randint(len(vectors), (1,), generator=torch.Generator().manual_seed(seed))))
        _update_nearest(vectors, nearest, rows[0])
    while len(rows) < min(budget, int((~labeled).sum())):
        nearest[rows] = -1.0
        nearest[labeled] = -1.0
        rows.append(int(nearest.argmax()))
        _update_nearest(vectors, nearest, rows[-1])
    return Picks(rows, [-1] * len(rows), [float("nan")] * len(rows))


def _update_nearest(vectors: UnitVectors, nearest: torch.Tensor, row: int) -> None:
    """``nearest (N,)``: each row's distance (1 - cosine) to its nearest centre, now with ``row`` one too."""
    centre = vectors.take(torch.tensor([row]))[0]
    for start, x in vectors.chunks():
        part = nearest[start : start + len(x)]
        torch.minimum(part, 1 - x @ centre, out=part)


def probcover_picks(
    vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options: SelectOptions
) -> Picks:
    """ProbCover (:mod:`.coverage`: the graph of balls and the purity rule); each pick's pseudo-class as its
    cluster."""
    rows, clusters, details = greedy_cover(vectors, labeled, budget, seed, options)
    return Picks(rows, clusters, [float("nan")] * len(rows), details)


STRATEGIES = {
    "typiclust": typiclust_picks,
    "probcover": probcover_picks,
    "kmeans": kmeans_picks,
    "kcenter": kcenter_picks,
    "random": random_picks,
}


def choose(
    strategy: str, vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options: SelectOptions
) -> tuple[Picks, dict]:
    """``(picks, what the strategy reports: probcover's radius)`` of ``budget`` unlabeled rows."""
    free = int((~labeled).sum())
    if budget > free:
        raise BadInput(f"select.budget: {budget} asked, but only {free} images are unlabeled")
    picks = STRATEGIES[strategy](vectors, labeled, budget, seed, options)
    return picks, picks.details
