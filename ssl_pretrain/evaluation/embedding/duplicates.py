"""Near-duplicates of an embeddings file, in bounded memory, in groups that do not chain.

Pairs are found a chunk of rows at a time, in row order: exactly (every pair, chunked matrix products) or, with
faiss, among each row's approximate nearest neighbours (an HNSW graph: for millions of rows, where the all-pairs
scan is quadratic). Each chunk's pairs are handed on as tensors and dropped, so memory is one chunk's pairs,
never the whole list.

Groups are made as the pairs stream by (leader clustering): in row order, a row not yet in a group leads a new
one, joined by every later row not yet in a group whose similarity to it is at least the threshold. Every member
is within the threshold of its group's first row, so a group never chains A ~ B ~ C into one when A and C
differ (single-link components would: one link at a time, a whole collection can join).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .search import hnsw_graph, normalised_chunk

Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # rows i (P,), rows j (P,), similarities (P,); i < j


@torch.no_grad()
def exact_pair_chunks(base, threshold: float, chunk: int, centre: torch.Tensor | None) -> Iterator[Pairs]:
    """For each chunk of ``chunk`` rows of ``base (N, D)``, in order: every pair ``i < j`` with cosine
    similarity >= ``threshold`` whose ``i`` is in the chunk, sorted by ``(i, j)``."""
    for a in range(0, len(base), chunk):
        left, found = normalised_chunk(base, a, chunk, centre), []
        for b in range(a, len(base), chunk):
            sims = left @ normalised_chunk(base, b, chunk, centre).T
            i, j = torch.nonzero(sims >= threshold, as_tuple=True)
            keep = (i + a) < (j + b)
            found.append(((i + a)[keep], (j + b)[keep], sims[i, j][keep]))
        yield _sorted(*(torch.cat(parts) for parts in zip(*found, strict=True)), len(base))


@torch.no_grad()
def approximate_pair_chunks(
    base, threshold: float, chunk: int, centre: torch.Tensor | None, candidates: int
) -> Iterator[Pairs]:
    """As :func:`exact_pair_chunks`, each row's later near-duplicates looked for among its ``candidates``
    approximate nearest neighbours in faiss's HNSW graph (a row with more near-duplicates than that keeps the
    most similar ``candidates``)."""
    graph = hnsw_graph(base, chunk, centre)
    wanted = min(candidates + 1, len(base))
    graph.hnsw.efSearch = max(128, wanted)
    for a in range(0, len(base), chunk):
        found = graph.search(normalised_chunk(base, a, chunk, centre).numpy(), wanted)
        sims, rows = (torch.from_numpy(x) for x in found)
        i = torch.arange(a, a + len(rows))[:, None].expand_as(rows)
        keep = (rows > i) & (sims >= threshold)
        yield _sorted(i[keep], rows[keep], sims[keep], len(base))


def _sorted(i: torch.Tensor, j: torch.Tensor, sims: torch.Tensor, n: int) -> Pairs:
    order = torch.argsort(i.long() * n + j.long())
    return i.long()[order], j.long()[order], sims.float()[order]


@dataclass
class LeaderGroups:
    """Groups built from pair chunks given in row order (see the module): ``leader[r]`` is the first row of
    ``r``'s group (-1: in none), ``similarity[r]`` its similarity to that row. ``(N,)`` tensors."""

    leader: torch.Tensor
    similarity: torch.Tensor

    @classmethod
    def empty(cls, rows: int) -> LeaderGroups:
        return cls(torch.full((rows,), -1, dtype=torch.long), torch.zeros(rows))

    def add(self, i: torch.Tensor, j: torch.Tensor, sims: torch.Tensor) -> None:
        """The pairs of one chunk, sorted by ``(i, j)``, every ``i`` after those of the chunks before."""
        starts = torch.searchsorted(i, torch.unique_consecutive(i))
        bounds = [*starts.tolist(), len(i)]
        for first, stop in zip(bounds[:-1], bounds[1:], strict=True):
            row = int(i[first])
            if self.leader[row] >= 0:
                continue  # already a member of an earlier row's group
            members, member_sims = j[first:stop], sims[first:stop]
            free = self.leader[members] < 0
            if free.any():
                self.leader[row], self.similarity[row] = row, 1.0
                self.leader[members[free]], self.similarity[members[free]] = row, member_sims[free]

    def groups(self) -> list[list[int]]:
        """Each group's rows, its first row first then the others in row order; biggest group first."""
        rows = torch.nonzero(self.leader >= 0).flatten()
        by_leader: dict[int, list[int]] = {}
        for row, leader in zip(rows.tolist(), self.leader[rows].tolist(), strict=True):
            by_leader.setdefault(leader, []).append(row)
        return sorted(by_leader.values(), key=lambda g: (-len(g), g[0]))


def grouped_pair_chunks(
    base, threshold: float, chunk: int, centre, index_kind: str, candidates: int, groups: LeaderGroups
) -> Iterator[Pairs]:
    """The pair chunks of ``index_kind`` (``exact`` or ``faiss``), each added to ``groups`` as it is handed on."""
    if index_kind == "faiss":
        chunks = approximate_pair_chunks(base, threshold, chunk, centre, candidates)
    else:
        chunks = exact_pair_chunks(base, threshold, chunk, centre)
    for pairs in chunks:
        groups.add(*pairs)
        yield pairs
