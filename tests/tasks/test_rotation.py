"""Rotation prediction: labels name the rotation actually applied and are exactly balanced."""

import torch

from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.tasks import RotationPrediction
from ssl_pretrain.tasks.parts.preview import label_each
from ssl_pretrain.tasks.rotation import balanced_labels

from ..helpers import seeded_batch


def _task(mode="one"):
    encoder = build_encoder("small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, 1, 16, [0.5], [0.25])
    return RotationPrediction(encoder, mode=mode)


def _applied_rotation(original: torch.Tensor, rotated: torch.Tensor) -> int:
    """Which k in 0..3 turns ``original (C, S, S)`` into ``rotated``; asymmetric images make it unique."""
    matches = [k for k in range(4) if torch.equal(torch.rot90(original, k, dims=(1, 2)), rotated)]
    assert len(matches) == 1
    return matches[0]


def test_labels_match_the_rotation_applied():
    images = torch.rand(24, 1, 16, 16)
    inputs, labels = _task("one").make_batch(images)
    assert inputs.shape == images.shape and labels.dtype == torch.int64
    assert [_applied_rotation(images[i], inputs[i]) for i in range(24)] == labels.tolist()


def test_one_rotation_per_image_is_exactly_balanced_in_every_batch():
    task = _task("one")
    for _ in range(5):
        _, labels = task.make_batch(torch.rand(32, 1, 16, 16))
        assert torch.bincount(labels, minlength=4).tolist() == [8, 8, 8, 8]
    _, labels = task.make_batch(torch.rand(6, 1, 16, 16))
    assert sorted(torch.bincount(labels, minlength=4).tolist()) == [1, 1, 2, 2]


def test_labels_are_uniform_for_every_position_over_many_draws():
    torch.manual_seed(0)
    draws = torch.stack([balanced_labels(8, 4, torch.device("cpu")) for _ in range(4000)])
    counts = torch.stack([torch.bincount(draws[:, i], minlength=4) for i in range(8)]).float()
    # 4000 draws per position, expected 1000 each; binomial std ~27, so 5 std is a loose bound.
    assert (counts - 1000).abs().max() < 140


def test_all_mode_shows_every_image_in_all_four_rotations():
    images = torch.rand(5, 1, 16, 16)
    inputs, labels = _task("all").make_batch(images)
    assert inputs.shape == (20, 1, 16, 16)
    for j in range(20):
        assert _applied_rotation(images[j % 5], inputs[j]) == labels[j]
    assert torch.bincount(labels).tolist() == [5, 5, 5, 5]


def test_same_seed_same_batch():
    images = torch.rand(16, 1, 16, 16)
    task = _task()
    a, b = seeded_batch(task, 3, images), seeded_batch(task, 3, images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_previews_rows_hold_the_rotations_in_order():
    task = _task()
    images = torch.rand(16, 1, 16, 16)
    inputs, labels = task.make_batch(images)
    grid = task.previews(inputs, labels, task(inputs))["rotation/rows_0_90_180_270"]
    assert grid.shape == (4, 4, 3, 48, 48)  # upscaled 3x, RGB so the label shows in red
    for k in range(4):
        assert torch.equal(grid[k], label_each(inputs[labels == k][:4], [str(90 * k)] * 4))
