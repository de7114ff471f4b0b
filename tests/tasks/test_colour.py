"""The direct-RGB hue shift against Kornia's HSV round trip (the values it must reproduce)."""

import math

import kornia.augmentation as K
import pytest
import torch
from kornia.enhance import adjust_hue

from ssl_pretrain.tasks.parts.colour import RandomHueDirect, shift_hue


def _images(dtype=torch.float32) -> torch.Tensor:
    """Random colours, uint8-quantised colours (ties between channels), grey, black and white pixels."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 12, 12, dtype=dtype)
    x[4:8] = (x[4:8] * 255).round() / 255
    x[8:10] = (torch.randint(0, 4, (2, 3, 12, 12)) / 3).to(dtype)
    x[10, :, :6] = x[10, :1, :6]  # grey
    x[11] = 0
    x[12] = 1
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shift_hue_matches_kornia_adjust_hue(dtype):
    x = _images(dtype)
    angles = torch.linspace(-math.pi, math.pi, len(x), dtype=dtype)
    ours, kornia = shift_hue(x, angles), adjust_hue(x, angles)
    assert (ours - kornia).abs().max() < (1e-5 if dtype == torch.float32 else 1e-6)
    assert torch.equal(ours[11], x[11]) and torch.equal(ours[12], x[12]), "black and white stay"
    assert (ours[10, :, :6] - x[10, :, :6]).abs().max() == 0, "grey pixels have no hue to shift"


def test_full_turn_and_zero_shift_leave_the_image():
    x = _images()
    for angle in (0.0, 2 * math.pi, -2 * math.pi):
        assert (shift_hue(x, torch.full((len(x),), angle)) - x).abs().max() < 1e-5


def test_random_hue_direct_draws_and_computes_what_kornia_does():
    x = _images()
    torch.manual_seed(3)
    ours = RandomHueDirect((-0.5, 0.5), p=1.0)(x)
    torch.manual_seed(3)
    reference = K.RandomHue((-0.5, 0.5), p=1.0)(x)
    assert (ours - reference).abs().max() < 1e-5
    assert (ours - x).abs().max() > 0.1, "the hue moved"
    half = x[:4].half()
    torch.manual_seed(3)
    ours_half = RandomHueDirect((-0.5, 0.5), p=1.0)(half)
    torch.manual_seed(3)
    assert torch.equal(ours_half, K.RandomHue((-0.5, 0.5), p=1.0)(half)), "half precision keeps Kornia's path"
