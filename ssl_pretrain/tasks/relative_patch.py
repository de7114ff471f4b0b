"""Relative patch location (Doersch et al. 2015): where is this patch relative to the centre one?

From each image a 3x3 grid of patches with a gap and per-patch jitter is cut on the device. The
encoder runs **once per patch**; pairs (centre, neighbour) are formed in feature space and a small
head predicts the neighbour's position (8-way). Shortcut defences: gap, jitter, per-patch
normalisation, colour dropping or grey conversion for colour images, optional random
down-and-up-sampling of patches.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..encoders import Encoder
from ..errors import check_option
from ..utils.images import to_grey
from .base import PretextTask
from .parts.heads import accuracy, classifier_head
from .parts.patches import CENTRE, NEIGHBOURS, default_geometry, extract_patches, grid_origins
from .parts.preview import draw_labels, label_each
from .rotation import balanced_labels


def normalise_patches(patches: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Give every patch zero mean and unit std *after* the encoder's own normalisation.

    ``patches (B, P, C, p, p)``; ``mean, std (1, C, 1, 1)`` are the encoder's statistics.
    """
    flat = patches.flatten(2)
    standard = (flat - flat.mean(-1, keepdim=True)) / flat.std(-1, keepdim=True).clamp_min(1e-3)
    return mean.unsqueeze(1) + std.unsqueeze(1) * standard.view_as(patches)


def drop_colour(patches: torch.Tensor, mode: str) -> torch.Tensor:
    """``gray``: every patch to grey (3 equal channels); ``drop``: keep one random channel per patch,
    replace the others with faint noise around its mean (Doersch et al.'s colour dropping)."""
    if mode == "none" or patches.shape[2] == 1:
        return patches
    if mode == "gray":
        return to_grey(patches, dim=2).expand_as(patches).contiguous()
    keep = torch.randint(0, 3, patches.shape[:2], device=patches.device)
    # A comparison, not F.one_hot: on the CPU one_hot checks its range with two reads of the values.
    kept = (keep.unsqueeze(-1) == torch.arange(3, device=patches.device)).view(*patches.shape[:2], 3, 1, 1)
    level = patches.mean(dim=(2, 3, 4), keepdim=True)
    noise = level + 0.01 * torch.randn_like(patches)
    return torch.where(kept, patches, noise)


def down_up_sample(patches: torch.Tensor, probability: float) -> torch.Tensor:
    """Halve then restore the resolution of a random ``probability`` share of patches."""
    if probability <= 0:
        return patches
    b, p, c, h, w = patches.shape
    flat = patches.reshape(b * p, c, h, w)
    chosen = (torch.rand(b * p, device=patches.device) < probability).view(-1, 1, 1, 1)
    # Every patch is resampled and the chosen ones kept: no data-dependent shapes, no wait on the device.
    small = F.interpolate(flat, scale_factor=0.5, mode="area")
    resampled = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return torch.where(chosen, resampled, flat).view(b, p, c, h, w)


class RelativePatchLocation(PretextTask):
    """8-way relative position of a neighbour patch around the centre patch.

    Args:
        resize: resize images to this side before cutting (null: keep; Fashion-MNIST: 48).
        patch, gap, jitter: grid geometry in px (null: scaled with the image, see ``default_geometry``).
        pairs: ``all`` 8 pairs per image (9 patches encoded) or ``one`` random pair (2 patches encoded).
        patch_norm: per-patch normalisation.
        colour: ``none``, ``gray`` or ``drop`` (colour images only).
        downsample_prob: share of patches randomly down- and up-sampled.
        head_hidden: hidden width of the pair head (on concatenated centre + neighbour features).
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        resize: int | None = None,
        patch: int | None = None,
        gap: int | None = None,
        jitter: int | None = None,
        pairs: Literal["all", "one"] = "all",
        patch_norm: bool = True,
        colour: Literal["none", "gray", "drop"] = "none",
        downsample_prob: float = 0.0,
        head_hidden: int = 512,
    ):
        super().__init__(encoder)
        size = resize or encoder.spec.image_size
        try:
            self.geometry = default_geometry(size, patch, gap, jitter)
        except ValueError as err:
            raise_option = "patch" if patch is not None else "resize"
            check_option(False, raise_option, str(err))
        check_option(0 <= downsample_prob <= 1, "downsample_prob", f"must be in [0, 1], got {downsample_prob}")
        self.resize = resize
        self.pairs = pairs
        self.patch_norm = patch_norm
        self.colour = colour
        self.downsample_prob = downsample_prob
        self.head = classifier_head(2 * encoder.num_features, 8, head_hidden)
        # Grid positions of the 8 neighbours, on the task's device: indexing with the Python tuple would copy
        # it from the host at every step.
        self.register_buffer("neighbour_index", torch.tensor(NEIGHBOURS), persistent=False)
        self.last_origins: torch.Tensor | None = None

    def cut_patches(self, images: torch.Tensor, jitter: bool = True) -> torch.Tensor:
        """``(B, C, H, W)`` -> the 9 grid patches ``(B, 9, C, p, p)``, in reading order."""
        if self.resize and images.shape[-1] != self.resize:
            images = F.interpolate(
                images, size=(self.resize, self.resize), mode="bilinear", antialias=True, align_corners=False
            )
        self.last_origins = grid_origins(len(images), self.geometry, images.device, jitter)
        return extract_patches(images, self.last_origins, self.geometry.patch)

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor | None = None):
        """``all``: patches ``(B, 9, C, p, p)``, labels ``(B * 8,)``; ``one``: ``(B, 2, C, p, p)``
        as (centre, neighbour), labels ``(B,)`` balanced over the 8 positions."""
        patches = self.cut_patches(images)
        patches = down_up_sample(drop_colour(patches, self.colour), self.downsample_prob)
        if self.patch_norm:
            patches = normalise_patches(patches, self.encoder.mean, self.encoder.std)
        if self.pairs == "all":
            return patches, torch.arange(8, device=images.device).repeat(len(images))
        labels = balanced_labels(len(images), 8, images.device)
        neighbour = self.neighbour_index[labels]
        rows = torch.arange(len(images), device=images.device)
        return torch.stack([patches[:, CENTRE], patches[rows, neighbour]], dim=1), labels

    @classmethod
    def probe_grid(cls, options: dict) -> dict:
        """The grid this task cut: a patch-grid probe of its encoder sees the patches it was trained on."""
        return {key: options.get(key) for key in ("resize", "patch", "gap")} | {
            "patch_norm": bool(options.get("patch_norm", True))
        }

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """One encoder pass over every patch: ``(B, P, C, p, p) -> (B, P, D)``."""
        features = self.encoder.forward_features(patches.flatten(0, 1))
        return features.view(*patches.shape[:2], -1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B * 8, 8)`` (``all``) or ``(B, 8)`` (``one``)."""
        features = self.encode_patches(inputs)
        if self.pairs == "all":
            centre = features[:, CENTRE : CENTRE + 1].expand(-1, 8, -1)
            neighbours = features.index_select(1, self.neighbour_index)
        else:
            centre, neighbours = features[:, :1], features[:, 1:]
        return self.head(torch.cat([centre, neighbours], dim=-1).flatten(0, 1))

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets), {"accuracy": accuracy(outputs, targets)}

    def previews(self, inputs, targets, outputs):
        """``all``: up to 8 images rebuilt from their 9 patches at the sampled positions, so the gap
        and jitter show (labels 0..7 = neighbours in reading order, centre skipped); ``one``: rows of
        (centre, neighbour) pairs."""
        shown = _to_unit_range(inputs[:8])
        if self.pairs != "all":
            n = len(shown)
            centre = label_each(shown[:, 0], ["c"] * n, scale=4)
            neighbour = label_each(shown[:, 1], [str(t) for t in targets[:n].tolist()], scale=4)
            return {"relative_patch/centre_then_neighbour": torch.stack([centre, neighbour], dim=1)}
        origins = self.last_origins[: len(shown)]
        canvas = paste_patches(shown, origins, self.geometry.size)
        names = [str(NEIGHBOURS.index(k)) if k != CENTRE else "c" for k in range(9)]
        labelled = [
            draw_labels(image, [(y, x, name) for (y, x), name in zip(corners.tolist(), names, strict=True)], scale=4)
            for image, corners in zip(canvas, origins, strict=True)
        ]
        return {"relative_patch/patch_grids": torch.stack(labelled).unsqueeze(0)}


def _to_unit_range(patches: torch.Tensor) -> torch.Tensor:
    """Stretch each image's patches (``(B, P, C, p, p)``) jointly to [0, 1] for display."""
    lo = patches.flatten(1).amin(-1).view(-1, 1, 1, 1, 1)
    hi = patches.flatten(1).amax(-1).view(-1, 1, 1, 1, 1)
    return (patches - lo) / (hi - lo).clamp_min(1e-6)


def paste_patches(patches: torch.Tensor, origins: torch.Tensor, size: int) -> torch.Tensor:
    """Place ``(B, P, C, p, p)`` patches at ``origins (B, P, 2)`` on white ``(B, C, size, size)`` canvases."""
    b, n, c, p, _ = patches.shape
    canvas = patches.new_ones(b, c, size, size)
    for i in range(b):
        for k in range(n):
            y, x = origins[i, k].tolist()
            canvas[i, :, y : y + p, x : x + p] = patches[i, k]
    return canvas
