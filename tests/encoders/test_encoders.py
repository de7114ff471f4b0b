import pytest
import torch
import torchvision
from torch import nn

from ssl_pretrain.encoders import ENCODERS, build_encoder


def _build(name, channels=3, size=32, **options):
    if name == "small_resnet":
        options = {"widths": [8, 16], "blocks": [1, 1], **options}
    return build_encoder(name, options, channels, size, [0.5] * channels, [0.25] * channels)


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_encoder_gives_pooled_features_and_named_stages(name, channels):
    encoder = _build(name, channels, size=64).eval()
    x = torch.rand(2, channels, 64, 64)
    features = encoder.forward_features(x)
    assert features.shape == (2, encoder.num_features)
    stages = encoder.forward_stages(x)
    assert list(stages) == encoder.stage_names
    last = stages[encoder.stage_names[-1]]
    assert last.shape[1] == encoder.num_features
    assert torch.allclose(last.mean(dim=(2, 3)), features, atol=1e-5)
    picked = encoder.forward_stages(x, [encoder.stage_names[1]])
    assert list(picked) == [encoder.stage_names[1]]


def test_small_resnet_width_and_depth_are_selectable():
    encoder = _build("small_resnet", 1, 28, widths=[8, 16, 24], blocks=[2, 1, 3])
    assert encoder.num_features == 24 and encoder.stage_names == ["stem", "layer1", "layer2", "layer3"]
    assert len(encoder.trunk.layer3) == 3
    maps = encoder.forward_stages(torch.rand(1, 1, 28, 28))
    assert [m.shape[-1] for m in maps.values()] == [28, 28, 14, 7]


def test_encoder_normalises_its_input():
    encoder = build_encoder("small_resnet", {"widths": [4], "blocks": [1]}, 1, 8, [0.25], [0.5])
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(encoder.normalize(x), (x - 0.25) / 0.5)
    assert "mean" not in encoder.state_dict() and "std" not in encoder.state_dict()


TORCHVISION = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "vgg11_bn": lambda: torchvision.models.vgg11_bn(weights=None),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None),
}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_trunk_loads_strictly_into_plain_torchvision(name):
    encoder = _build(name, 3, 64)
    plain = TORCHVISION[name]()
    if hasattr(plain, "fc"):
        plain.fc = nn.Identity()
    else:
        plain.classifier = nn.Identity()
    plain.load_state_dict(encoder.trunk.state_dict(), strict=True)
    x = torch.rand(2, 3, 64, 64)
    plain.eval(), encoder.eval()
    with torch.no_grad():
        # torchvision's VGG flattens a 7x7 adaptive pool; its trunk's GAP is what the encoder gives.
        normalised = encoder.normalize(x)
        expected = plain.features(normalised).mean((2, 3)) if name == "vgg11_bn" else plain(normalised)
        assert torch.allclose(expected, encoder(x), atol=1e-5)


def test_too_small_input_is_a_config_error():
    from ssl_pretrain.build import make_encoder
    from ssl_pretrain.config import load_config
    from ssl_pretrain.data import DataInfo
    from ssl_pretrain.errors import ConfigError

    config = load_config(None, ["model.backbone=vgg11_bn"])
    with pytest.raises(ConfigError, match="model.backbone: vgg11_bn cannot take 28 px"):
        make_encoder(config, DataInfo(1, 28, [0.5], [0.25]))
