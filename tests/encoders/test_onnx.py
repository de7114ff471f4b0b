"""``ssl-pretrain export ... export.format=onnx``: an ONNX graph with a dynamic batch axis whose onnxruntime
features equal PyTorch's within 1e-4; without the optional extra, one line saying what to install."""

import builtins

import numpy as np
import pytest
import torch
import yaml

import ssl_pretrain as ssl
from ssl_pretrain.cli import main

from ..helpers import folder_overrides


@pytest.fixture
def checkpoint(image_folder, tmp_path):
    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, "gauges.every=null"]) == 0
    return tmp_path / "run" / "checkpoints" / "last.pt"


def test_the_onnx_encoder_matches_pytorch_at_any_batch_size(checkpoint, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")  # the optional extra: skipped, not an error, without it
    out = tmp_path / "exported"
    assert main(["export", str(checkpoint), str(out), "export.format=onnx"]) == 0
    assert "onnxruntime matches PyTorch to" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    (inputs,), (outputs,) = session.get_inputs(), session.get_outputs()
    assert inputs.name == "images" and inputs.shape[1:] == [3, 16, 16] and isinstance(inputs.shape[0], str)
    assert outputs.name == "features" and outputs.shape[1] == 8
    encoder = ssl.load_encoder(checkpoint)
    for batch in (1, 7):
        x = torch.rand(batch, 3, 16, 16)
        (ours,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(ours, encoder(x).numpy(), atol=1e-4, rtol=0)
    spec = yaml.safe_load((out / "encoder.yaml").read_text())
    assert spec["in_channels"] == 3 and spec["image_size"] == 16 and "ONNX" in spec["loading"]


def test_without_the_onnx_extra_export_says_what_to_install(checkpoint, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    assert main(["export", str(checkpoint), str(tmp_path / "x.onnx"), "export.format=onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "export.format=onnx" in err[0] and "pip install 'ssl-pretrain[onnx]'" in err[0]
    assert not (tmp_path / "x.onnx").exists()


def test_the_export_leaves_the_caller_s_encoder_alone_and_refuses_a_pt_name_for_onnx(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    from ssl_pretrain.encoders.onnx import export_onnx

    encoder = ssl.load_encoder(checkpoint).train()
    export_onnx(encoder, tmp_path / "own.onnx")
    assert encoder.training, "the caller's encoder keeps its mode (and device)"
    assert main(["export", str(checkpoint), str(tmp_path / "x.pt"), "export.format=onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.pt" in err[0] and ".onnx" in err[0]
    assert not (tmp_path / "x.pt").exists(), "no folder named x.pt"
