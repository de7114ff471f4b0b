import pytest
import torch
import torchvision
import yaml
from torch import nn

from ssl_pretrain.cli import main
from ssl_pretrain.encoders.export import load_exported_encoder
from ssl_pretrain.evaluation.shared.encoder_source import load_encoder

from ..helpers import folder_overrides


@pytest.fixture
def resnet_run(image_folder, tmp_path):
    overrides = [o for o in folder_overrides(image_folder, tmp_path) if not o.startswith("model.")]
    overrides.append("model={backbone: resnet18}")  # replaces the config's small_resnet options
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *overrides, "trainer.max_steps=1", "data.image_size=32"]
    assert main(args) == 0
    return tmp_path / "run"


def test_torchvision_encoder_pt_loads_strictly_into_plain_torchvision(resnet_run):
    state = torch.load(resnet_run / "encoder.pt", weights_only=True)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()
    model.load_state_dict(state, strict=True)
    spec = yaml.safe_load((resnet_run / "encoder.yaml").read_text())
    assert spec["torchvision_model"] == "resnet18" and spec["in_channels"] == 3 and spec["image_size"] == 32
    assert spec["num_features"] == 512 and len(spec["mean"]) == 3
    encoder = load_encoder(resnet_run).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(encoder.normalize(x)), encoder(x), atol=1e-5)


def test_export_command_matches_the_run_export(resnet_run, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", str(resnet_run / "checkpoints" / "last.pt"), str(out)]) == 0
    a = torch.load(resnet_run / "encoder.pt", weights_only=True)
    b = torch.load(out / "encoder.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert main(["export", str(resnet_run / "checkpoints" / "last.pt"), str(tmp_path / "enc.pt")]) == 0
    assert (tmp_path / "enc.yaml").is_file()


def test_every_encoder_source_gives_the_same_features(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    x = torch.rand(2, 3, 16, 16)
    outputs = [load_encoder(src).eval()(x) for src in (run, run / "encoder.pt", run / "checkpoints" / "last.pt")]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_encoder_of_another_architecture_is_a_one_line_error(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    spec_path = tmp_path / "run" / "encoder.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["options"]["widths"] = [8, 8]
    spec_path.write_text(yaml.safe_dump(spec))
    from ssl_pretrain.errors import BadInput

    with pytest.raises(BadInput, match="does not match the small_resnet encoder"):
        load_exported_encoder(tmp_path / "run" / "encoder.pt")
    assert main(["probe", f"evaluation.encoder={tmp_path / 'run' / 'encoder.pt'}"]) == 2
    assert "does not match" in capsys.readouterr().err
