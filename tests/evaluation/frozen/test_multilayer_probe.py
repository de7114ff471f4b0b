"""Multi-layer probes: per-layer pooling sizes and dimensions, one extraction pass, the CLI table."""

import json

import pytest
import torch
import torch.nn.functional as F

from ssl_pretrain.cli import main
from ssl_pretrain.config import load_config
from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.errors import ConfigError
from ssl_pretrain.evaluation.features.layer_view import LayerView, available_layers
from ssl_pretrain.evaluation.features.views import probe_layers

from ...helpers import folder_overrides


def _encoder():
    return build_encoder("small_resnet", {"widths": [8, 16, 32]}, 1, 28, [0.5], [0.25]).eval()


def test_each_layer_is_pooled_to_about_the_target_size():
    encoder = _encoder()
    view = LayerView(encoder, available_layers(encoder), layer_dim=512, image_size=28)
    x = torch.rand(3, 1, 28, 28)
    out = view.forward_layers(x)
    # stem/layer1: 8 ch at 28 px -> 8x8 grid (sqrt(512/8)); layer2: 16 ch at 14 px -> 5x5; layer3: 32 ch
    # at 7 px -> 4x4; pooled: 32.
    expected = {"stem": 8 * 8 * 8, "layer1": 8 * 8 * 8, "layer2": 16 * 5 * 5, "layer3": 32 * 4 * 4, "pooled": 32}
    assert {name: f.shape for name, f in out.items()} == {n: (3, d) for n, d in expected.items()}
    assert all(d <= 512 for d in expected.values())
    maps = encoder.forward_stages(x)
    assert torch.allclose(out["layer2"], F.adaptive_avg_pool2d(maps["layer2"], 5).flatten(1), atol=1e-6)
    assert torch.allclose(out["pooled"], encoder.forward_features(x), atol=1e-6)
    assert view.pooling_of("layer3") == "average pooling to 4x4"


def test_a_small_map_is_never_upsampled():
    encoder = _encoder()
    view = LayerView(encoder, ["layer3"], layer_dim=100_000, image_size=28)
    assert view.grid == {"layer3": 7}  # capped at the map's own 7x7
    assert view.forward_layers(torch.rand(2, 1, 28, 28))["layer3"].shape == (2, 32 * 49)


def test_all_layers_come_from_one_encoder_pass(monkeypatch):
    encoder = _encoder()
    view = LayerView(encoder, available_layers(encoder), layer_dim=256, image_size=28)
    calls = []
    original = encoder.forward_stages
    monkeypatch.setattr(encoder, "forward_stages", lambda x, names=None: calls.append(names) or original(x, names))
    view.forward_layers(torch.rand(2, 1, 28, 28))
    assert len(calls) == 1


def test_probe_layers_are_checked_against_the_encoder():
    encoder = _encoder()
    assert probe_layers("all", False, encoder) == available_layers(encoder)
    assert probe_layers("layer2", False, encoder) == ["layer2"]
    assert probe_layers(load_config(None, ["probe.layers=[layer2,pooled]"]).probe.layers, False, encoder) == [
        "layer2",
        "pooled",
    ]
    with pytest.raises(ConfigError, match="probe.layers: unknown layer"):
        probe_layers(["layer9"], False, encoder)
    with pytest.raises(ConfigError, match="cannot be combined"):
        probe_layers("all", True, encoder)


def test_multilayer_probe_command_writes_a_row_per_layer(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = [
        "probe",
        f"evaluation.encoder={run}",
        "probe.layers=all",
        "probe.layer_dim=64",
        "evaluation.control=random_init",
    ]
    assert main(args) == 0
    report = json.loads((run / "probe.json").read_text())
    layers = ["stem", "layer1", "layer2", "pooled"]
    assert [(r["encoder"], r["layer"]) for r in report["results"]] == [
        (e, layer) for e in ("pretrained", "random_init") for layer in layers
    ]
    # widths [4, 8] at 16 px: stem/layer1 4 ch -> 4x4 grid, layer2 8 ch at 8 px -> 2x2; pooled 8.
    assert [r["feature_dim"] for r in report["results"][:4]] == [64, 64, 32, 8]
    assert report["protocol"]["layer_dim"] == 64
    assert report["classifier_file"] is None  # several layers: no single classifier to save
    out = capsys.readouterr().out
    assert all(layer in out for layer in layers)
