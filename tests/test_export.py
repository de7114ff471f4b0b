import pytest
import torch
import torchvision
import yaml
from torch import nn

from ssl_pretrain.cli import main
from ssl_pretrain.evaluation.encoder_source import load_encoder
from ssl_pretrain.train.export import load_exported_encoder

from .conftest import folder_overrides


@pytest.fixture
def resnet_run(image_folder, tmp_path):
    overrides = [o for o in folder_overrides(image_folder, tmp_path) if not o.startswith("model.")]
    overrides.append("model={backbone: resnet18}")  # replaces the config's small_resnet options
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
    assert main(["probe", f"probe.encoder={tmp_path / 'run' / 'encoder.pt'}"]) == 2
    assert "does not match" in capsys.readouterr().err
