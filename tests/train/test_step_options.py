"""Options of the training step: non-finite losses (stop or skip), precision, channels-last, torch.compile."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.tasks import DenoisingAutoencoder
from ssl_pretrain.train import checkpoint
from ssl_pretrain.utils.files import safe_torch_load
from ssl_pretrain.utils.precision import cpu_has_native_bf16, describe_precision

from ..helpers import folder_overrides, interrupt_after_checkpoint


def _pretrain(image_folder, out, extra=(), name="run", resume=False):
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, out, name), *extra]
    return main(args + (["--resume"] if resume else []))


@pytest.fixture
def nan_on_third_loss(monkeypatch):
    """The DAE's 3rd loss of the process is NaN, as after an exploding update."""
    calls = {"n": 0}
    loss = DenoisingAutoencoder.loss

    def poisoned(self, outputs, targets):
        value, metrics = loss(self, outputs, targets)
        calls["n"] += 1
        return (value * float("nan") if calls["n"] == 3 else value), metrics

    monkeypatch.setattr(DenoisingAutoencoder, "loss", poisoned)


def test_a_nan_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(
    image_folder, tmp_path, capsys, nan_on_third_loss
):
    assert _pretrain(image_folder, tmp_path, ["trainer.max_steps=6"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ssl-pretrain: training stopped: loss became nan at step 3")
    ckpt = safe_torch_load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "encoder.pt").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_skip_policy_skips_the_update_and_counts_it(image_folder, tmp_path, capsys, monkeypatch, nan_on_third_loss):
    steps = []
    save = checkpoint.save_checkpoint

    def record(run):
        steps.append((run.state.progress.step, run.state.progress.skipped_steps))
        save(run)

    monkeypatch.setattr(checkpoint, "save_checkpoint", record)
    assert _pretrain(image_folder, tmp_path, ["trainer.max_steps=6", "trainer.nonfinite=skip"]) == 0
    assert "loss became nan at step 3; step skipped (1 so far" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_steps"] == 1 and metrics["steps"] == 6 and metrics["images_seen"] == 5 * 8
    assert steps == [(2, 0), (4, 1), (6, 1)]
    ckpt = safe_torch_load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/skipped_steps")] == [(3, 1.0)]
    assert 3 not in [e.step for e in events.Scalars("train/loss")]


def test_fp16_autocast_with_a_gradient_scaler_resumes_exactly(image_folder, tmp_path, monkeypatch):
    extra = ["trainer.precision=fp16", "trainer.max_steps=5", "trainer.checkpoint_every=2"]
    assert _pretrain(image_folder, tmp_path, extra, "straight") == 0
    interrupt_after_checkpoint(monkeypatch, 2)
    assert _pretrain(image_folder, tmp_path, extra, "resumed") == 130
    monkeypatch.undo()
    assert safe_torch_load(tmp_path / "resumed" / "checkpoints" / "last.pt")["scaler"]["scale"] > 0
    assert _pretrain(image_folder, tmp_path, extra, "resumed", resume=True) == 0
    a = safe_torch_load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = safe_torch_load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["scaler"] == b["scaler"] and a["scaler"]["_growth_tracker"] == 5
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((tmp_path / "straight" / "metrics.json").read_text())["precision"] == "fp16"


def test_auto_precision_follows_the_cpu_and_bf16_runs(image_folder, tmp_path, capsys):
    assert _pretrain(image_folder, tmp_path, ["trainer.precision=auto"], name="auto") == 0
    assert safe_torch_load(tmp_path / "auto" / "checkpoints" / "last.pt")["scaler"] is None
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert json.loads((tmp_path / "auto" / "metrics.json").read_text())["precision"] == expected
    assert f"pretraining: {describe_precision('auto', torch.device('cpu'))}" in capsys.readouterr().out
    assert _pretrain(image_folder, tmp_path, ["trainer.precision=bf16"], name="bf16") == 0
    metrics = json.loads((tmp_path / "bf16" / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["pretext_loss"] > 0


def _stem_weight(run):
    return safe_torch_load(run / "checkpoints" / "last.pt")["model"]["encoder.trunk.stem.0.weight"]


def test_channels_last_by_default_where_safe_and_plain_weights_exported(image_folder, tmp_path, capsys):
    wide = ["model.widths=[16, 32]"]
    assert _pretrain(image_folder, tmp_path, wide) == 0  # the default
    weight = _stem_weight(tmp_path / "run")
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert main(["probe", f"evaluation.encoder={tmp_path / 'run'}", "probe.max_iter=5"]) == 0
    assert _pretrain(image_folder, tmp_path, [*wide, "trainer.channels_last=false"], name="plain") == 0
    assert _stem_weight(tmp_path / "plain").is_contiguous()
    # widths [4, 8]: layer2's 1x1 stride-2 shortcut has 4 input channels (oneDNN issue #6035)
    assert _pretrain(image_folder, tmp_path, name="narrow") == 0
    assert _stem_weight(tmp_path / "narrow").is_contiguous(), "null avoids the unsafe layout"
    capsys.readouterr()
    assert _pretrain(image_folder, tmp_path, ["trainer.channels_last=true"], name="forced") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "trainer.channels_last: true is unsafe on CPU" in err[0] and "layer2.0.shortcut.0" in err[0]
    )
    assert not (tmp_path / "forced").exists()


def _cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would use, or None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # noqa: BLE001 - any failure to find one means torch.compile cannot run here
        return None


@pytest.mark.skipif(_cpp_compiler() is None, reason="torch.compile on CPU needs a C++ compiler; none found")
def test_compiled_training_step(image_folder, tmp_path):
    assert _pretrain(image_folder, tmp_path, ["trainer.compile=true", "trainer.compile_mode=default"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["compile_seconds"] > 0, "the compiling step is kept out of images/s"
