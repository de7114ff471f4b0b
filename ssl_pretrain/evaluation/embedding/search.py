"""Exact cosine search over an embeddings file in chunked matrix products: memory is one chunk of the base
times one chunk of the queries, whatever the collection's size, so a memory-mapped file larger than memory
works (near-duplicates: :mod:`.duplicates`).

Every function takes ``centre``: a vector subtracted from every embedding (and query) before the cosine, the
collection's mean by default in ``neighbours``. A CNN's pooled features are all positive after its last ReLU,
so their plain cosines crowd near 1; centred, they spread over [-1, 1] and a threshold means something."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import BadInput

FAISS_EXTRA = "pip install 'ssl-pretrain[faiss]' (faiss-cpu)"


def read_rows(base, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``base`` (an array, or a :class:`~.store.VectorFile` read from disk now)."""
    if hasattr(base, "read"):
        return base.read(start, stop)
    return np.array(base[start:stop], dtype=np.float32)


def normalised_chunk(base, start: int, size: int, centre: torch.Tensor | None) -> torch.Tensor:
    """Rows ``start:start + size`` of ``base``, centred and normalised, float32."""
    rows = torch.from_numpy(read_rows(base, start, start + size))
    return F.normalize(rows - centre if centre is not None else rows, dim=1)


def _normalised(queries: torch.Tensor, centre: torch.Tensor | None) -> torch.Tensor:
    """``(Q, D)`` queries centred (when ``centre``) and L2-normalised, float32."""
    queries = queries.float()
    return F.normalize(queries - centre if centre is not None else queries, dim=1)


def collection_mean(base, chunk: int = 4096) -> torch.Tensor:
    """``(D,)`` mean of the rows of ``base (N, D)``, read a chunk at a time."""
    total = torch.zeros(base.shape[1], dtype=torch.float64)
    for start in range(0, len(base), chunk):
        total += torch.from_numpy(read_rows(base, start, start + chunk)).double().sum(0)
    return (total / max(1, len(base))).float()


@torch.no_grad()
def top_k_cosine(
    queries: torch.Tensor,
    base,
    k: int,
    chunk: int = 4096,
    exclude: torch.Tensor | None = None,
    centre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``base (N, D)`` (an array or a :class:`~.store.VectorFile`) most cosine-similar to each
    of ``queries (Q, D)``.

    ``exclude (Q,)``: a row of ``base`` each query must not return (itself, when the queries are base rows;
    -1: none). Returns ``(similarities (Q, k), rows (Q, k))``, most similar first.
    """
    q = _normalised(queries, centre)
    k = min(k, len(base) - (0 if exclude is None else 1))
    best_sim = torch.full((len(q), 0), -2.0)
    best_row = torch.zeros((len(q), 0), dtype=torch.long)
    for start in range(0, len(base), chunk):
        sims = q @ normalised_chunk(base, start, chunk, centre).T
        rows = torch.arange(start, start + sims.shape[1]).expand(len(q), -1)
        if exclude is not None:
            sims = sims.masked_fill(rows == exclude[:, None], -2.0)
        merged_sim, merged_row = torch.cat([best_sim, sims], 1), torch.cat([best_row, rows], 1)
        top = merged_sim.topk(min(k, merged_sim.shape[1]), dim=1)
        best_sim, best_row = top.values, merged_row.gather(1, top.indices)
    return best_sim, best_row


def hnsw_graph(base, chunk: int, centre: torch.Tensor | None, links: int = 32):
    """faiss's HNSW graph (inner product) of the centred, normalised rows of ``base``, added a chunk at a time."""
    try:
        import faiss
    except ImportError:
        raise BadInput(f"neighbours.index=faiss needs the faiss extra: {FAISS_EXTRA}") from None
    graph = faiss.IndexHNSWFlat(base.shape[1], links, faiss.METRIC_INNER_PRODUCT)
    for start in range(0, len(base), chunk):
        graph.add(normalised_chunk(base, start, chunk, centre).numpy())
    return graph


@torch.no_grad()
def approximate_top_k(
    queries: torch.Tensor,
    base,
    k: int,
    chunk: int = 4096,
    exclude: torch.Tensor | None = None,
    centre: torch.Tensor | None = None,
    links: int = 32,
    breadth: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`top_k_cosine` returns, from faiss's HNSW graph (Malkov & Yashunin 2018) on the same centred
    and normalised vectors, added a chunk at a time: for millions of rows, where exact search is slow. The
    graph lives in memory (``N x D`` floats plus ``links`` edges a row); ``breadth`` is faiss's ``efSearch``.
    Its recall against exact search is measured by ``benchmarks/embedding_use.py``."""
    graph = hnsw_graph(base, chunk, centre, links)
    extra = 0 if exclude is None else 1
    k = min(k, len(base) - extra)  # never more rows than there are (faiss would pad with row -1)
    graph.hnsw.efSearch = max(breadth, k + extra)
    q = _normalised(queries, centre)
    sims, rows = (torch.from_numpy(a) for a in graph.search(q.numpy(), k + extra))
    if exclude is not None:  # drop each query's own row (or the last one found, when it was not found)
        own = rows == exclude[:, None]
        keep = torch.where(own.any(1, keepdim=True), ~own, torch.arange(k + 1) < k)
        sims, rows = sims[keep].view(len(q), k), rows[keep].view(len(q), k)
    return sims, rows
