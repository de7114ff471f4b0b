"""What ``neighbours`` writes: a PNG grid of each query beside its nearest neighbours, the neighbours as
JSON, and the near-duplicate report (groups whose members are within a similarity threshold of their first
image, biggest first) as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from ...tasks.parts.preview import label_each


def source_name(row: dict) -> str:
    """How reports name a collection row: its file path, or ``#position`` in its dataset."""
    return row["path"] or f"#{row['position']}"


def save_neighbour_grid(path: Path, queries: torch.Tensor, neighbours: torch.Tensor, sims: torch.Tensor) -> Path:
    """``queries (Q, C, H, W)`` and ``neighbours (Q, k, C, H, W)`` uint8, ``sims (Q, k)`` -> one PNG whose row
    ``q`` is query ``q`` (marked ``query``) then its neighbours, each marked with its cosine similarity."""
    q, k = sims.shape
    tiles = []
    for i in range(q):
        tiles.append(label_each(queries[i : i + 1].float() / 255, ["query"]))
        tiles.append(label_each(neighbours[i].float() / 255, [f"{s:.2f}" for s in sims[i].tolist()]))
    grid = torch.cat(tiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path, nrow=k + 1, padding=2, pad_value=1.0)
    return path


def neighbour_report(names: list[str], rows: torch.Tensor, sims: torch.Tensor, index: list[dict]) -> dict:
    """``{query name: [{"source", "similarity"}, ...]}`` most similar first."""
    return {
        name: [{"source": source_name(index[r]), "similarity": round(s, 4)} for r, s in zip(rr, ss, strict=True)]
        for name, rr, ss in zip(names, rows.tolist(), sims.tolist(), strict=True)
    }


def duplicate_report(groups: list[list[int]], similarity: torch.Tensor, index, fmt: str) -> bytes:
    """JSON ``{first file of a group: [{"source", "similarity"}, ...]}`` (biggest group first; each member's
    similarity to the group's first file), or CSV rows ``group,size,source,similarity``."""
    if fmt == "json":
        named = {
            source_name(index[g[0]]): [
                {"source": source_name(index[r]), "similarity": round(float(similarity[r]), 4)} for r in g[1:]
            ]
            for g in groups
        }
        return (json.dumps(named, indent=2) + "\n").encode()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["group", "size", "source", "similarity"])
    for number, group in enumerate(groups):
        for row in group:
            writer.writerow([number, len(group), source_name(index[row]), f"{float(similarity[row]):.4f}"])
    return out.getvalue().encode()
