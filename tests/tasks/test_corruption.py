import pytest
import torch

from ssl_pretrain.tasks.parts.corruption import RandomPixelMasking, apply_mask, make_corruption, pixel_mask


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(16, 3, 20, 20) * 0.8 + 0.1  # no exact 0 or 1 in the clean images


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_pixel_mask_has_exactly_the_fraction_per_sample(fraction):
    mask = pixel_mask(32, 10, 12, fraction, torch.device("cpu"))
    assert mask.shape == (32, 1, 10, 12) and mask.dtype == torch.bool
    assert (mask.flatten(1).sum(1) == round(fraction * 120)).all()


def test_masking_zeroes_the_fraction_in_every_channel_and_differs_per_sample(images):
    aug = RandomPixelMasking(0.3)
    out = aug(images)
    zero = out == 0
    assert (zero.flatten(1).float().mean(1) == round(0.3 * 400) / 400).all()
    assert (zero[:, 0] == zero[:, 1]).all() and (zero[:, 0] == zero[:, 2]).all()
    assert not (zero[0] == zero[1]).all(), "each sample draws its own mask"
    assert torch.equal(out[~zero], images[~zero]), "unmasked pixels untouched"


def test_masking_replays_a_draw_with_its_params(images):
    aug = RandomPixelMasking(0.5)
    first = aug(images)
    assert torch.equal(aug(images, params=aug._params), first)


def test_apply_mask_is_pure(images):
    mask = torch.zeros(16, 1, 20, 20, dtype=torch.bool)
    mask[:, :, 0, 0] = True
    out = apply_mask(images, mask)
    assert (out[:, :, 0, 0] == 0).all() and images[:, :, 0, 0].min() > 0


@pytest.mark.parametrize("std", [0.05, 0.2])
def test_gaussian_noise_has_the_configured_std(images, std):
    out = make_corruption("gaussian", std)(images)
    noise = out - images
    assert noise.std().item() == pytest.approx(std, rel=0.05)
    assert noise.mean().abs().item() < 0.01
    assert not torch.allclose(noise[0], noise[1])


@pytest.mark.parametrize("amount", [0.05, 0.3])
def test_salt_and_pepper_hits_the_fraction_with_zeros_and_ones(images, amount):
    out = make_corruption("salt_pepper", amount)(images)
    hit = out != images
    assert hit.float().mean().item() == pytest.approx(amount, abs=0.02)
    assert set(out[hit].unique().tolist()) <= {0.0, 1.0}
    assert (out[hit] == 1).float().mean().item() == pytest.approx(0.5, abs=0.08)


def test_corruptions_leave_their_input_clean(images):
    clean = images.clone()
    for kind in ("masking", "gaussian", "salt_pepper"):
        make_corruption(kind, 0.3)(images)
    assert torch.equal(images, clean)
