"""The embeddings a selection reads, centred and L2-normalised (cosine geometry), in memory when they fit and
read a chunk at a time from disk when they do not; and spherical k-means over them."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .search import collection_mean, read_rows


class UnitVectors:
    """``(N, D)`` rows of an embeddings file, centred on their mean and L2-normalised when read. Held in memory
    when they take at most ``memory_mb``, else read from the file a ``chunk`` of rows at a time."""

    def __init__(self, base, chunk: int = 4096, memory_mb: float = 2048):
        self.base, self.chunk = base, chunk
        self.mean = collection_mean(base, chunk)
        self.shape = (len(base), base.shape[1])
        fits = len(base) * base.shape[1] * 4 <= memory_mb * 2**20
        self.held = torch.cat([c for _, c in self._read_chunks()]) if fits and len(base) else None

    def __len__(self) -> int:
        return self.shape[0]

    def _read_chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        for start in range(0, len(self.base), self.chunk):
            rows = torch.from_numpy(read_rows(self.base, start, start + self.chunk))
            yield start, F.normalize(rows - self.mean, dim=1)

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, (n, D) unit rows)`` over the whole collection."""
        if self.held is None:
            yield from self._read_chunks()
            return
        for start in range(0, len(self), self.chunk):
            yield start, self.held[start : start + self.chunk]

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        """``(len(rows), D)`` unit rows, in the order given."""
        if self.held is not None:
            return self.held[rows]
        order = rows.argsort()
        taken = torch.from_numpy(np.stack([read_rows(self.base, int(r), int(r) + 1)[0] for r in rows[order]]))
        out = torch.empty_like(taken)
        out[order] = F.normalize(taken - self.mean, dim=1)
        return out


def spherical_kmeans(
    vectors: UnitVectors, k: int, seed: int, iterations: int = 20
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(centres (k, D) unit, assignment (N,), similarity of each row to its centre (N,))`` by Lloyd's
    iterations on cosine similarity, started by k-means++ on a sample of at most 20,000 rows drawn by ``seed``;
    an emptied cluster restarts at a random row. One pass over the rows an iteration: memory is the centres
    and one chunk."""
    generator = torch.Generator().manual_seed(seed)
    k = min(k, len(vectors))
    sample = torch.randperm(len(vectors), generator=generator)[: max(20000, k)].sort().values
    centres = kmeans_plus_plus(vectors.take(sample), k, generator)
    for _ in range(iterations):
        sums = torch.zeros(k, vectors.shape[1], dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.long)
        for _, x in vectors.chunks():
            nearest = (x @ centres.T).argmax(dim=1)
            sums.index_add_(0, nearest, x.double())
            counts += torch.bincount(nearest, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        moved = F.normalize(sums.float(), dim=1)
        if len(empty):
            moved[empty] = vectors.take(torch.randint(len(vectors), (len(empty),), generator=generator))
        if torch.equal(moved, centres):
            break
        centres = moved
    assignment = torch.empty(len(vectors), dtype=torch.long)
    similarity = torch.empty(len(vectors))
    for start, x in vectors.chunks():
        best = (x @ centres.T).max(dim=1)
        assignment[start : start + len(x)], similarity[start : start + len(x)] = best.indices, best.values
    return centres, assignment, similarity


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` rows of unit ``x (n, D)`` as starting centres: greedy k-means++ (Arthur & Vassilvitskii 2007, with
    scikit-learn's local trials): each step draws ``2 + log k`` candidates with probability proportional to
    their squared distance to the nearest centre so far and keeps the one that lowers the total most."""
    trials = 2 + int(math.log(max(k, 1)))
    first = int(torch.randint(len(x), (1,), generator=generator))
    chosen = [first]
    nearest = (2 - 2 * (x @ x[first])).clamp_min(0)
    for _ in range(k - 1):
        weights = nearest if float(nearest.sum()) > 0 else torch.ones(len(x))
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
        options = torch.minimum(nearest[None], (2 - 2 * (x[candidates] @ x.T)).clamp_min(0))
        best = int(options.sum(dim=1).argmin())
        chosen.append(int(candidates[best]))
        nearest = options[best]
    return x[chosen]
