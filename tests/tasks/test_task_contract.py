"""The contract of every registered pretext task, the way tests/encoders checks every encoder: it builds
from its defaults, makes a batch on the images' device, returns a finite scalar loss with finite detached
metrics, sends gradients to the encoder, and its encoder's weights load strictly into a fresh encoder built
from the stored spec (what evaluation does with a checkpoint)."""

import pytest
import torch

from ssl_pretrain.encoders import build_encoder, encoder_from_spec
from ssl_pretrain.evaluation.shared.encoder_source import encoder_state
from ssl_pretrain.registry import TASKS

SIZE = 28


def _task(name: str):
    torch.manual_seed(0)
    encoder = build_encoder("small_resnet", {"widths": [8, 16, 16]}, 1, SIZE, [0.5], [0.25])
    return TASKS[name](encoder)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_builds_a_batch_and_a_finite_loss(name):
    task = _task(name)
    images = torch.rand(16, 1, SIZE, SIZE)
    task.select_images(10_000, seed=0)  # once, as pretraining does (Exemplar draws its seed images)
    inputs, targets = task.make_batch(images, torch.arange(16))
    loss, metrics = task.loss(task(inputs), targets)
    assert loss.dim() == 0 and torch.isfinite(loss), name
    assert all(not torch.is_tensor(v) or (not v.requires_grad and torch.isfinite(v).all()) for v in metrics.values())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.encoder.parameters()), name


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_s_encoder_loads_strictly_from_its_spec(name):
    task = _task(name)
    fresh = encoder_from_spec(task.encoder.spec)
    fresh.load_state_dict(encoder_state(task.state_dict(), "checkpoint"), strict=True)
    x = torch.rand(2, 1, SIZE, SIZE)
    task.encoder.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), task.encoder(x))
