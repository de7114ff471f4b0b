"""3x3 patch grids with a gap and per-patch jitter (Doersch et al. 2015), as pure functions.

Grid positions are numbered 0..8 in reading order; the centre is 4. The relative-location label
of a neighbour is its position among the 8 neighbours in reading order (0..7, centre skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)  # grid position of each label
CENTRE = 4


@dataclass(frozen=True)
class PatchGeometry:
    """Image side ``size`` cut into 3x3 cells of ``size // 3``; patches of ``patch`` px leave
    ``gap`` px between neighbours before jitter; each patch moves up to ``jitter`` px each way."""

    size: int
    patch: int
    gap: int
    jitter: int

    @property
    def cell(self) -> int:
        return self.size // 3


def default_geometry(
    size: int, patch: int | None = None, gap: int | None = None, jitter: int | None = None
) -> PatchGeometry:
    """Scale the grid with the image: gap ~ 1/4 of a cell, jitter ~ gap / 2 (e.g. 96 px: 32 px
    cells, 24 px patches, gap 8, jitter 4; 224 px: 74 px cells, 56 px patches, gap 18, jitter 9)."""
    cell = size // 3
    gap = max(1, round(cell / 4)) if gap is None else gap
    patch = cell - gap if patch is None else patch
    jitter = max(0, gap // 2) if jitter is None else jitter
    if patch < 4 or 3 * patch + 2 * gap > size + 2 * jitter or gap < 0 or jitter < 0:
        raise ValueError(
            f"a 3x3 grid of {patch} px patches with gap {gap} and jitter {jitter} does not fit a {size} px image"
        )
    return PatchGeometry(size, patch, gap, jitter)


def grid_origins(batch: int, geometry: PatchGeometry, device: torch.device, jitter: bool = True) -> torch.Tensor:
    """Top-left corners ``(B, 9, 2)`` (y, x) of the 9 patches, jittered independently per patch."""
    g = geometry
    base = torch.arange(3, device=device) * g.cell + (g.cell - g.patch) // 2
    origins = torch.stack(torch.meshgrid(base, base, indexing="ij"), dim=-1).view(1, 9, 2).repeat(batch, 1, 1)
    if jitter and g.jitter > 0:
        origins = origins + torch.randint(-g.jitter, g.jitter + 1, (batch, 9, 2), device=device)
    return origins.clamp(0, g.size - g.patch)


def extract_patches(images: torch.Tensor, origins: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut ``(B, P, C, patch, patch)`` patches at ``origins (B, P, 2)`` from ``images (B, C, H, W)``."""
    b, p = origins.shape[:2]
    offsets = torch.arange(patch, device=images.device)
    rows = (origins[..., 0, None] + offsets).view(b, p, patch, 1)
    cols = (origins[..., 1, None] + offsets).view(b, p, 1, patch)
    batch_index = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    return images.permute(0, 2, 3, 1)[batch_index, rows, cols].permute(0, 1, 4, 2, 3)


def label_offsets(labels: torch.Tensor) -> torch.Tensor:
    """Grid offset (row, col) in {-1, 0, 1} of the neighbour each label names. ``(N,) -> (N, 2)``."""
    position = torch.as_tensor(NEIGHBOURS, device=labels.device)[labels]
    return torch.stack([position // 3 - 1, position % 3 - 1], dim=-1)
