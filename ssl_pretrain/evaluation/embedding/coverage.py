"""ProbCover (Yehuda et al. 2022): cover the collection with balls of one radius, each pick the row whose ball
holds the most rows no pick (or labeled row) covers yet.

The radius is the largest at which ``purity`` of the balls hold rows of one k-means pseudo-class only (the
paper's rule, with k-means standing in for the classes): a row's ball is pure below the distance to its nearest
row of another pseudo-class, so the radius is a quantile of those distances. The balls are exact: every pair
closer than the radius is an edge of the graph (memory: the edges, about N times the mean ball), found one
chunk of rows against another.
"""

from __future__ import annotations

import math

import torch

from .clusters import UnitVectors, spherical_kmeans


def nearest_other_distance(vectors: UnitVectors, pseudo: torch.Tensor) -> torch.Tensor:
    """``(N,)`` each row's distance (``1 - cosine``) to its nearest row of another pseudo-class (``pseudo``:
    ``(N,)``); one chunk of queries against one chunk of rows at a time."""
    nearest, scratch = [], _Scratch(vectors.chunk)
    for start, queries in vectors.chunks():
        best = torch.full((len(queries),), -2.0)
        own = pseudo[start : start + len(queries), None]
        for base_start, base in vectors.chunks():
            pair = scratch.products(queries, base)
            pair.masked_fill_(scratch.flags(own, pseudo[None, base_start : base_start + len(base)], torch.eq), -2.0)
            best = torch.maximum(best, pair.max(dim=1).values)
        nearest.append(1 - best)
    return torch.cat(nearest)


def purest_radius(nearest_other: torch.Tensor, purity: float) -> tuple[float, float]:
    """``(radius, purity at it)``: the largest radius at which at least ``purity`` of the balls (every row
    closer than the radius) hold no row of another pseudo-class; ``nearest_other``: ``(N,)``."""
    ordered = nearest_other.sort().values
    pure_rows = min(len(ordered), math.ceil(purity * len(ordered) - 1e-9))
    radius = float(ordered[len(ordered) - pure_rows])  # this many rows lie at least that far from another class
    return radius, int((nearest_other >= radius).sum()) / len(nearest_other)


def ball_edges(vectors: UnitVectors, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(centre (E,), member (E,))``: every ordered pair of different rows closer than ``radius``."""
    centres, members, scratch = [], [], _Scratch(vectors.chunk)
    for start, queries in vectors.chunks():
        for base_start, base in vectors.chunks():
            close = scratch.flags(scratch.products(queries, base), 1 - radius, torch.gt)
            if base_start == start:
                close.fill_diagonal_(False)  # a row is not its own neighbour
            pairs = close.nonzero()
            centres.append(pairs[:, 0] + start)
            members.append(pairs[:, 1] + base_start)
    return torch.cat(centres), torch.cat(members)


class _Scratch:
    """The ``(chunk, chunk)`` buffers that chunk-by-chunk products and comparisons are written into: a fresh
    matrix per pair of chunks, allocated between the small tensors kept, grew the heap with the square of the
    rows (the allocator could not hand the freed blocks back)."""

    def __init__(self, chunk: int):
        self.values, self.bools = torch.empty(chunk * chunk), torch.empty(chunk * chunk, dtype=torch.bool)

    def products(self, queries: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """``(q, b)`` cosine similarities of unit rows ``queries (q, D)`` and ``base (b, D)``."""
        out = self.values[: len(queries) * len(base)].view(len(queries), len(base))
        return torch.matmul(queries, base.T, out=out)

    def flags(self, left: torch.Tensor, right, compare) -> torch.Tensor:
        """``compare(left, right)`` (broadcast to ``(q, b)``) into the boolean buffer."""
        shape = torch.broadcast_shapes(left.shape, right.shape if isinstance(right, torch.Tensor) else ())
        return compare(left, right, out=self.bools[: shape[0] * shape[1]].view(shape))


def greedy_cover(vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options):
    """``(rows picked in order, each one's pseudo-class, {"radius", "purity", "mean_ball"})``."""
    n = len(vectors)
    _, pseudo, _ = spherical_kmeans(vectors, options.clusters, seed, options.iterations)
    radius, purity = purest_radius(nearest_other_distance(vectors, pseudo), options.purity)
    centre, member = ball_edges(vectors, radius)
    mean_ball = len(centre) / n + 1
    centre, member = torch.cat([centre, torch.arange(n)]), torch.cat([member, torch.arange(n)])  # a ball holds its row
    order = member.argsort(stable=True)
    by_member, member_ptr = centre[order], _pointers(member, n)
    order = centre.argsort(stable=True)
    by_centre, centre_ptr = member[order], _pointers(centre, n)
    covered = torch.zeros(n, dtype=torch.bool)
    for row in labeled.nonzero().flatten().tolist():
        covered[by_centre[centre_ptr[row] : centre_ptr[row + 1]]] = True
    degree = torch.zeros(n, dtype=torch.long).index_add_(0, centre, (~covered[member]).long())
    free, generator, picked = ~labeled, torch.Generator().manual_seed(seed), []
    while len(picked) < budget:
        candidates = degree.masked_fill(~free, -1)
        most = int(candidates.max())
        # among equals (and once everything is covered: among the rest) one at random, not the first in file order
        tied = (candidates == most).nonzero().flatten() if most > 0 else free.nonzero().flatten()
        row = int(tied[torch.randint(len(tied), (1,), generator=generator)])
        ball = by_centre[centre_ptr[row] : centre_ptr[row + 1]]
        newly = ball[~covered[ball]]
        covered[newly] = True
        for j in newly.tolist():  # each centre whose ball holds j covers one row fewer now
            degree[by_member[member_ptr[j] : member_ptr[j + 1]]] -= 1
        free[row] = False
        picked.append(row)
    return (
        picked,
        pseudo[picked].tolist(),
        {
            "radius": round(radius, 4),
            "purity": round(purity, 4),
            "mean_ball": round(mean_ball, 2),
        },
    )


def _pointers(keys: torch.Tensor, n: int) -> torch.Tensor:
    """``(n + 1,)`` CSR offsets of sorted ``keys``: key ``i``'s entries are ``ptr[i]:ptr[i + 1]``."""
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(keys, minlength=n).cumsum(0)])
