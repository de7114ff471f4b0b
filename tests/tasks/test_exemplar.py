"""Exemplar: surrogate labels come from the seed, copies differ, losses match their definitions."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.errors import BadInput, OptionError
from ssl_pretrain.tasks import Exemplar
from ssl_pretrain.tasks.parts.losses import multi_positive_nt_xent
from ssl_pretrain.tasks.parts.preview import label_each

from ..helpers import seeded_batch


def _task(channels=1, **options):
    encoder = build_encoder(
        "small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, channels, 16, [0.5] * channels, [0.25] * channels
    )
    return Exemplar(encoder, **options)


def test_copies_of_one_seed_share_its_label_and_differ_in_pixels():
    task = _task(copies=3, num_seeds=50)
    images = torch.rand(6, 1, 16, 16)
    indices = torch.tensor([4, 9, 0, 33, 12, 49])
    inputs, labels = task.make_batch(images, indices)
    assert inputs.shape == (18, 1, 16, 16)
    assert labels.view(6, 3).tolist() == [[i] * 3 for i in indices.tolist()]
    copies = inputs.view(6, 3, -1)
    for s in range(6):
        for a in range(3):
            assert not torch.allclose(copies[s, a], images[s].flatten(), atol=1e-3)
            for b in range(a + 1, 3):
                assert (copies[s, a] - copies[s, b]).abs().max() > 1e-2


def test_copies_are_closer_to_their_own_seed_than_to_other_seeds():
    """The transformation keeps the seed recognisable: a smooth seed vs other smooth seeds."""
    torch.manual_seed(0)
    images = F.interpolate(torch.rand(8, 1, 4, 4), size=16, mode="bilinear", align_corners=False)
    task = _task(
        copies=4, num_seeds=8, rotation=5.0, translate=0.05, scale=[0.95, 1.05], brightness=0.05, contrast=0.05
    )
    inputs, labels = task.make_batch(images, torch.arange(8))
    distance = torch.cdist(inputs.flatten(1), images.flatten(1))
    assert (distance.argmin(dim=1) == labels).float().mean() > 0.9


def test_same_seed_same_batch():
    task = _task(copies=2, num_seeds=20)
    images, indices = torch.rand(4, 1, 16, 16), torch.arange(4)
    a, b, c = (seeded_batch(task, seed, images, indices) for seed in (7, 7, 8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_seed_images_are_chosen_by_the_run_seed():
    task = _task(num_seeds=10)
    chosen = task.select_images(100, seed=0)
    assert len(chosen) == 10 and len(chosen.unique()) == 10 and chosen.max() < 100
    assert torch.equal(chosen, task.select_images(100, seed=0))
    assert not torch.equal(chosen, task.select_images(100, seed=1))
    assert _task(num_seeds=None, loss="contrastive").select_images(100, seed=0) is None
    with pytest.raises(BadInput, match="task.num_seeds"):
        task.select_images(5, seed=0)


def test_colour_transforms_only_for_colour_images():
    grey = [type(op).__name__ for op in _task(1, saturation=0.3, hue=0.1).augment]
    colour = [type(op).__name__ for op in _task(3, saturation=0.3, hue=0.1).augment]
    assert "RandomSaturation" not in grey and "RandomHue" not in grey
    assert "RandomSaturation" in colour and "RandomHueDirect" in colour


def test_contrastive_head_does_not_grow_with_the_number_of_seeds():
    def head_size(task):
        return sum(p.numel() for p in task.head.parameters())

    assert head_size(_task(num_seeds=1000, loss="contrastive")) == head_size(_task(num_seeds=None, loss="contrastive"))
    assert head_size(_task(num_seeds=1000)) == 8 * 1000 + 1000
    with pytest.raises(OptionError, match="num_seeds"):
        _task(num_seeds=None, loss="classifier")


def _nt_xent_reference(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    z = F.normalize(z, dim=1)
    total = 0.0
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        denominator = sum(math.exp(float(z[i] @ z[j]) / temperature) for j in others)
        positives = [j for j in others if labels[j] == labels[i]]
        total += -sum(float(z[i] @ z[j]) / temperature - math.log(denominator) for j in positives) / len(positives)
    return total / len(z)


def test_multi_positive_nt_xent_matches_a_hand_written_reference():
    torch.manual_seed(0)
    z = torch.randn(9, 5, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    loss, _ = multi_positive_nt_xent(z, labels, 0.3)
    assert loss.item() == pytest.approx(_nt_xent_reference(z, labels, 0.3), rel=1e-9)


def test_nt_xent_accuracy_counts_anchors_whose_nearest_neighbour_is_a_positive():
    z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert multi_positive_nt_xent(z, torch.tensor([0, 0, 1, 1]), 0.1)[1].item() == 1.0
    assert multi_positive_nt_xent(z, torch.tensor([0, 1, 0, 1]), 0.1)[1].item() == 0.0


@pytest.mark.parametrize("loss", ["classifier", "contrastive"])
def test_one_step_of_either_loss_learns(loss):
    torch.manual_seed(0)
    task = _task(num_seeds=8, copies=2, loss=loss)
    images, indices = torch.rand(8, 1, 16, 16), torch.arange(8)
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # the same transformations every step: the loss must fall
        inputs, targets = task.make_batch(images, indices)
        value, metrics = task.loss(task(inputs), targets)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.7 * losses[0] and 0 <= metrics["accuracy"] <= 1


def test_previews_show_each_seed_then_its_copies():
    task = _task(copies=3, num_seeds=10)
    images = torch.rand(5, 1, 16, 16)
    inputs, labels = task.make_batch(images, torch.arange(5))
    grid = task.previews(inputs, labels, None)["exemplar/seed_then_copies"]
    assert grid.shape == (4, 4, 3, 48, 48)
    assert torch.equal(grid[:, 0], label_each(images[:4], ["seed"] * 4))
    assert torch.equal(grid[1, 1:], label_each(inputs[3:6], ["1"] * 3))  # seed 1's copies, marked with its class
