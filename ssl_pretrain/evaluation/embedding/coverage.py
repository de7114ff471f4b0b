"""ProbCover (Yehuda et al. 2022): cover the collection with balls of one radius, each pick the row whose ball
holds the most rows no pick (or labeled row) covers yet.

The radius is the largest at which ``purity`` of the balls hold rows of one k-means pseudo-class only (the
paper's rule, with k-means standing in for the classes). A ball is read among each row's
``ball_neighbours`` nearest rows (cosine): a ball holding more is seen truncated, which the purity and the
coverage both use as it is.
"""

from __future__ import annotations

import torch

from .clusters import UnitVectors, spherical_kmeans


def nearest_rows(vectors: UnitVectors, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances (N, k), rows (N, k))``: each row's ``k`` nearest other rows, distance ``1 - cosine``,
    nearest first; one chunk of queries against one chunk of rows at a time."""
    distances, rows = [], []
    for start, queries in vectors.chunks():
        best_sims = torch.full((len(queries), k), -2.0)
        best_rows = torch.zeros((len(queries), k), dtype=torch.long)
        own = torch.arange(start, start + len(queries))
        for base_start, base in vectors.chunks():
            sims = queries @ base.T
            ids = torch.arange(base_start, base_start + len(base)).expand(len(queries), -1)
            sims[ids == own[:, None]] = -2.0  # not itself
            merged = torch.cat([best_sims, sims], dim=1)
            top = merged.topk(k, dim=1)
            best_rows = torch.cat([best_rows, ids], dim=1).gather(1, top.indices)
            best_sims = top.values
        distances.append(1 - best_sims)
        rows.append(best_rows)
    return torch.cat(distances), torch.cat(rows)


def purest_radius(
    distances: torch.Tensor, rows: torch.Tensor, pseudo: torch.Tensor, purity: float
) -> tuple[float, float]:
    """``(radius, purity at it)``: the largest of 40 radii spanning the neighbour distances whose balls are at
    least ``purity`` pure (every row in the ball of the centre's pseudo-class); the smallest if none is."""
    same = pseudo[rows] == pseudo[:, None]
    grid = torch.linspace(float(distances[:, 0].min()), float(distances[:, -1].max()), 40)
    chosen = (float(grid[0]), 1.0)
    for radius in grid.tolist():
        inside = distances <= radius
        pure = float((same | ~inside).all(dim=1).float().mean())
        if pure >= purity:
            chosen = (radius, pure)
    return chosen


def greedy_cover(vectors: UnitVectors, labeled: torch.Tensor, budget: int, seed: int, options):
    """``(rows picked in order, each one's pseudo-class, {"radius", "purity", "mean_ball"})``."""
    n = len(vectors)
    _, pseudo, _ = spherical_kmeans(vectors, options.clusters, seed, options.iterations)
    distances, rows = nearest_rows(vectors, min(options.ball_neighbours, n - 1))
    radius, purity = purest_radius(distances, rows, pseudo, options.purity)
    inside = distances <= radius
    centre = torch.arange(n).repeat_interleave(inside.sum(dim=1))
    member = rows[inside]
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
        row = int(candidates.argmax())
        if candidates[row] <= 0:  # everything covered: the rest at random, as the paper's code does
            rest = free.nonzero().flatten()
            row = int(rest[torch.randint(len(rest), (1,), generator=generator)])
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
            "mean_ball": float(inside.sum(1).float().mean()),
        },
    )


def _pointers(keys: torch.Tensor, n: int) -> torch.Tensor:
    """``(n + 1,)`` CSR offsets of sorted ``keys``: key ``i``'s entries are ``ptr[i]:ptr[i + 1]``."""
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(keys, minlength=n).cumsum(0)])
