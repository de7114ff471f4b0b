"""Relative patch location: labels match the grid geometry, every patch is encoded exactly once."""

import pytest
import torch

from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.errors import OptionError
from ssl_pretrain.evaluation.features.feature_view import FeatureView
from ssl_pretrain.tasks import RelativePatchLocation
from ssl_pretrain.tasks.parts.patches import (
    CENTRE,
    NEIGHBOURS,
    default_geometry,
    extract_patches,
    grid_origins,
    label_offsets,
)
from ssl_pretrain.tasks.relative_patch import down_up_sample, drop_colour, normalise_patches

from ..helpers import seeded_batch


def _task(size=48, channels=1, **options):
    encoder = build_encoder(
        "small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, channels, size, [0.5] * channels, [0.25] * channels
    )
    return RelativePatchLocation(encoder, **options)


def _coordinate_images(batch: int, size: int) -> torch.Tensor:
    """Pixel value = its own ``y * size + x``: a patch's top-left value gives back where it was cut."""
    image = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size)
    return image.repeat(batch, 1, 1, 1)


def _origin(patch: torch.Tensor, size: int) -> torch.Tensor:
    value = int(patch[0, 0, 0])
    return torch.tensor([value // size, value % size])


@pytest.mark.parametrize("pairs", ["one", "all"])
def test_labels_match_the_geometry_of_the_patches(pairs):
    """Reconstruct each pair's offset from the pixels and check it against the offset its label names."""
    size = 48
    task = _task(size, pairs=pairs, patch_norm=False)
    geometry = task.geometry
    torch.manual_seed(0)
    patches, labels = task.make_batch(_coordinate_images(32, size))
    if pairs == "all":
        assert patches.shape == (32, 9, 1, geometry.patch, geometry.patch) and labels.shape == (32 * 8,)
        centre = patches[:, CENTRE].repeat_interleave(8, 0)
        neighbour = patches[:, list(NEIGHBOURS)].flatten(0, 1)
    else:
        assert patches.shape == (32, 2, 1, geometry.patch, geometry.patch) and labels.shape == (32,)
        assert torch.bincount(labels, minlength=8).tolist() == [4] * 8
        centre, neighbour = patches[:, 0], patches[:, 1]
    expected = label_offsets(labels)
    for i in range(len(labels)):
        shift = _origin(neighbour[i], size) - _origin(centre[i], size)
        # The nearest whole number of cells is the label's offset; the rest is both patches' jitter.
        assert torch.equal(torch.round(shift / geometry.cell).long(), expected[i])
        assert ((shift - expected[i] * geometry.cell).abs() <= 2 * geometry.jitter).all()


def test_gap_separates_neighbours_and_jitter_moves_patches_independently():
    g = default_geometry(48)
    assert (g.cell, g.patch, g.gap, g.jitter) == (16, 12, 4, 2)
    fixed = grid_origins(1, g, torch.device("cpu"), jitter=False)[0]
    assert torch.equal(fixed[1] - fixed[0], torch.tensor([0, g.patch + g.gap]))
    torch.manual_seed(0)
    jittered = grid_origins(500, g, torch.device("cpu"))
    moved = jittered - fixed
    assert moved.abs().max() <= g.jitter and moved.min() == -g.jitter and moved.max() == g.jitter
    # Patches never overlap after jitter: the gap is at least gap - 2 * jitter >= 0.
    assert ((jittered[:, 1, 1] - jittered[:, 0, 1]) >= g.patch).all()


@pytest.mark.parametrize(
    "size,cell,patch,gap,jitter", [(28, 9, 7, 2, 1), (32, 10, 8, 2, 1), (96, 32, 24, 8, 4), (224, 74, 56, 18, 9)]
)
def test_default_geometry_scales_with_the_image(size, cell, patch, gap, jitter):
    g = default_geometry(size)
    assert (g.cell, g.patch, g.gap, g.jitter) == (cell, patch, gap, jitter)
    corners = grid_origins(64, g, torch.device("cpu"))
    assert corners.min() >= 0 and corners.max() <= size - patch


def test_a_grid_that_does_not_fit_is_refused():
    with pytest.raises(OptionError, match="patch"):
        _task(48, patch=20)


def test_extract_patches_cuts_at_the_origins():
    images = torch.rand(3, 2, 20, 20)
    origins = torch.tensor([[[0, 0], [5, 7]], [[12, 3], [1, 1]], [[15, 15], [0, 9]]])
    patches = extract_patches(images, origins, 5)
    for b in range(3):
        for p in range(2):
            y, x = origins[b, p].tolist()
            assert torch.equal(patches[b, p], images[b, :, y : y + 5, x : x + 5])


@pytest.mark.parametrize("pairs,encoded_per_image", [("all", 9), ("one", 2)])
def test_the_encoder_runs_once_per_patch(pairs, encoded_per_image, monkeypatch):
    task = _task(48, pairs=pairs)
    seen = []
    original = task.encoder.forward_features

    def counting(x):
        seen.append(x.detach().clone())
        return original(x)

    monkeypatch.setattr(task.encoder, "forward_features", counting)
    inputs, labels = task.make_batch(torch.rand(6, 1, 48, 48))
    logits = task(inputs)
    assert len(seen) == 1 and len(seen[0]) == 6 * encoded_per_image
    assert len(seen[0].flatten(1).unique(dim=0)) == 6 * encoded_per_image  # no patch twice
    assert logits.shape == (len(labels), 8)


def test_pairs_are_formed_in_feature_space_from_the_right_patches():
    """Logits of pair (centre, neighbour k) equal the head applied to those two patches' features."""
    task = _task(48).eval()
    patches, labels = task.make_batch(torch.rand(3, 1, 48, 48))
    logits = task(patches)
    features = task.encoder.forward_features(patches.flatten(0, 1)).view(3, 9, -1)
    for b in range(3):
        for k, position in enumerate(NEIGHBOURS):
            pair = torch.cat([features[b, CENTRE], features[b, position]])[None]
            assert torch.allclose(logits[b * 8 + k], task.head(pair)[0], atol=1e-5)
            assert labels[b * 8 + k] == k


def test_per_patch_normalisation_standardises_each_patch():
    mean, std = torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.25]).view(1, 1, 1, 1)
    patches = torch.rand(2, 9, 1, 8, 8) * 3 + 5
    out = (normalise_patches(patches, mean, std) - 0.5) / 0.25
    assert torch.allclose(out.flatten(2).mean(-1), torch.zeros(2, 9), atol=1e-5)
    assert torch.allclose(out.flatten(2).std(-1), torch.ones(2, 9), atol=1e-4)


def test_colour_defences():
    patches = torch.rand(4, 9, 3, 8, 8)
    grey = drop_colour(patches, "gray")
    assert torch.equal(grey[:, :, 0], grey[:, :, 1]) and torch.equal(grey[:, :, 1], grey[:, :, 2])
    dropped = drop_colour(patches, "drop")
    kept = (dropped == patches).flatten(3).all(-1)  # (B, 9, 3): which channels survive
    assert (kept.sum(-1) == 1).all()
    assert drop_colour(torch.rand(2, 9, 1, 8, 8), "drop").shape == (2, 9, 1, 8, 8)
    torch.manual_seed(0)
    resampled = down_up_sample(patches, 0.5)
    changed = (resampled != patches).flatten(2).any(-1)
    assert 0.2 < changed.float().mean() < 0.8
    assert torch.equal(down_up_sample(patches, 0.0), patches)


def test_same_seed_same_batch():
    task = _task(48, colour="drop", downsample_prob=0.3, channels=3)
    images = torch.rand(4, 3, 48, 48)
    a, b = seeded_batch(task, 5, images), seeded_batch(task, 5, images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_previews_paste_the_patches_where_they_were_cut():
    task = _task(48, patch_norm=False)
    images = torch.rand(2, 1, 48, 48)
    patches, labels = task.make_batch(images)
    canvas = task.previews(patches, labels, None)["relative_patch/patch_grids"][0]
    assert canvas.shape == (2, 3, 4 * 48, 4 * 48)  # upscaled 4x, RGB so the labels show in red
    p = task.geometry.patch
    stretched = (images[0] - patches[0].min()) / (patches[0].max() - patches[0].min())
    red = canvas[0, 0] - canvas[0, 1] > 0.5
    for k, (y, x) in enumerate(task.last_origins[0].tolist()):
        # Bottom half of each patch: the image itself, at the position it was cut from.
        shown = canvas[0, 0, 4 * (y + p // 2) : 4 * (y + p) : 4, 4 * x : 4 * (x + p) : 4]
        assert torch.allclose(shown, stretched[0, y + p // 2 : y + p, x : x + p], atol=1 / 255)
        # Top-left of each patch: its label (0..7 in reading order, centre "c") drawn in red.
        assert red[4 * y : 4 * y + 16, 4 * x : 4 * x + 16].any(), k
    assert (canvas[0] == 1.0).all(dim=0).any()  # white gaps between the patches


def test_patch_grid_probe_features_are_the_mean_of_the_nine_grid_patches():
    task = _task(48).eval()
    view = FeatureView(task.encoder, geometry=default_geometry(48, jitter=0), patch_norm=True)
    images = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        torch.manual_seed(0)
        features = view.forward_features(images)
        patches = task.cut_patches(images, jitter=False)
        patches = normalise_patches(patches, task.encoder.mean, task.encoder.std)
        expected = torch.stack([task.encoder.forward_features(patches[b]).mean(0) for b in range(3)])
    assert features.shape == (3, task.encoder.num_features)
    assert torch.allclose(features, expected, atol=1e-5)
