import pytest
import torch
import torch.nn.functional as F

from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.tasks import DenoisingAutoencoder
from ssl_pretrain.tasks.parts.decoder import bed_of_nails_unpool, max_unpool, nearest_unpool


def test_nearest_unpool_copies_each_value_into_its_block():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    out = nearest_unpool(x, (4, 6))
    assert torch.equal(out, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert nearest_unpool(torch.rand(1, 2, 4, 4), (7, 7)).shape == (1, 2, 7, 7)


def test_bed_of_nails_puts_values_in_one_corner_and_zeros_elsewhere():
    x = torch.rand(2, 3, 4, 4) + 1
    out = bed_of_nails_unpool(x, (8, 8))
    assert torch.equal(out[..., ::2, ::2], x)
    others = torch.ones(8, 8, dtype=torch.bool)
    others[::2, ::2] = False
    assert (out[..., others] == 0).all()
    odd = bed_of_nails_unpool(torch.rand(1, 1, 3, 3) + 1, (7, 7))
    assert odd.shape == (1, 1, 7, 7) and (odd != 0).sum() == 9


def test_max_unpool_puts_values_at_the_encoders_saved_indices():
    encoder = build_encoder(
        "small_resnet", {"widths": [4, 8], "blocks": [1, 1], "downsample": "maxpool"}, 1, 16, [0.5], [0.25]
    )
    x = torch.rand(2, 1, 16, 16)
    with encoder.record_downsampling() as records:
        encoder.forward_maps(x)
    (record,) = records
    assert record.is_max_pool and record.in_size == (16, 16)
    pooled_values = torch.rand(2, 4, 8, 8) + 1
    out = max_unpool(pooled_values, record)
    assert out.shape == (2, 4, 16, 16)
    flat = out.flatten(2)
    assert torch.equal(flat.gather(2, record.indices.flatten(2)), pooled_values.flatten(2))
    assert (flat != 0).sum() == pooled_values.numel(), "every other position stays zero"


def test_recorded_indices_are_those_of_the_pooling():
    encoder = build_encoder("vgg11_bn", {"small_input": True}, 3, 28, [0.5] * 3, [0.25] * 3)
    seen = []
    pool = encoder.trunk.features[3]
    pool.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with encoder.record_downsampling() as records:
        encoder.forward_maps(torch.rand(1, 3, 28, 28))
    assert [r.in_size for r in records] == [(28, 28), (14, 14), (7, 7)]
    assert records[0].module is pool
    _, expected = F.max_pool2d(seen[0], 2, 2, return_indices=True)
    assert torch.equal(records[0].indices, expected)


MODES = ["nearest", "bed_of_nails", "max_unpool", "transposed"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [28, 32, 17])
def test_reconstruction_has_the_input_shape(mode, size):
    downsample = "maxpool" if mode == "max_unpool" else "stride"
    encoder = build_encoder(
        "small_resnet", {"widths": [4, 8, 8], "blocks": [1, 1, 1], "downsample": downsample}, 1, size, [0.5], [0.25]
    )
    task = DenoisingAutoencoder(encoder, upsample=mode)
    inputs, targets = task.make_batch(torch.rand(3, 1, size, size))
    out = task(inputs)
    assert out.shape == targets.shape == (3, 1, size, size)
    loss, _ = task.loss(out, targets)
    loss.backward()
    assert all(p.grad is not None for p in task.decoder.parameters())


@pytest.mark.parametrize("mode", MODES)
def test_torchvision_backbones_get_a_mirrored_decoder(mode):
    backbone, options = ("vgg11_bn", {"small_input": True}) if mode == "max_unpool" else ("resnet18", {})
    encoder = build_encoder(backbone, options, 3, 32, [0.5] * 3, [0.25] * 3)
    task = DenoisingAutoencoder(encoder, upsample=mode)
    assert task(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_dae_target_is_the_clean_image_and_loss_is_mse_in_normalised_units():
    encoder = build_encoder("small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, 1, 16, [0.3], [0.4])
    task = DenoisingAutoencoder(encoder, corruption="masking", level=0.5)
    images = torch.rand(4, 1, 16, 16) + 0.01
    inputs, targets = task.make_batch(images)
    assert torch.equal(targets, images)
    assert ((inputs == 0).flatten(1).float().mean(1) == 0.5).all()
    outputs = torch.randn(4, 1, 16, 16)
    loss, _ = task.loss(outputs, targets)
    assert loss.item() == pytest.approx(F.mse_loss(outputs, (images - 0.3) / 0.4).item())
