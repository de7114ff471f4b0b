"""Precision and memory layout of the training step, on their own."""

import pytest
import torch
from torch import nn

from ssl_pretrain.errors import ConfigError
from ssl_pretrain.utils.precision import (
    announce_precision,
    channels_last_hazard,
    cpu_has_native_bf16,
    describe_precision,
    resolve_channels_last,
    resolve_precision,
    to_memory_format,
)

CPU = torch.device("cpu")


def test_auto_precision_on_cpu_follows_native_bf16_and_bf16_runs_under_autocast(monkeypatch, capsys):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_precision("auto", CPU).dtype is None and not cpu_has_native_bf16()
    assert describe_precision("auto", CPU) == "precision: fp32 (auto, no native bf16 on this CPU)"
    resolve_precision("bf16", CPU)
    assert "without native bf16" in capsys.readouterr().err, "emulated bf16 asked for is said to be slow"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)  # a Sapphire Rapids: AMX
    assert resolve_precision("auto", CPU).dtype == torch.bfloat16 and cpu_has_native_bf16()
    assert describe_precision("auto", CPU) == "precision: bf16 autocast (auto, native bf16 on this CPU)"
    resolve_precision("bf16", CPU)
    assert capsys.readouterr().err == "", "native bf16 is not warned about"
    announce_precision("auto", CPU, "pretraining")
    assert capsys.readouterr().out == "pretraining: precision: bf16 autocast (auto, native bf16 on this CPU)\n"
    bf16 = resolve_precision("bf16", CPU, warn=False)
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    fp16 = resolve_precision("fp16", CPU, warn=False)
    assert fp16.scaler is not None and bf16.scaler is None


def test_the_onednn_hazard_is_found_and_refused_when_forced():
    risky = nn.Sequential(nn.Conv2d(3, 8, 1, stride=2))
    safe = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2), nn.Conv2d(3, 8, 3, stride=2))
    assert "1x1, stride 2, 3 input channels" in channels_last_hazard(risky)
    assert channels_last_hazard(safe) is None
    assert resolve_channels_last(None, CPU, risky) is False and resolve_channels_last(None, CPU, safe) is True
    with pytest.raises(ConfigError, match="trainer.channels_last"):
        resolve_channels_last(True, CPU, risky)


def test_memory_format_applies_to_image_batches_and_mappings_of_them():
    x = torch.rand(2, 3, 4, 4)
    assert to_memory_format(x, True).is_contiguous(memory_format=torch.channels_last)
    assert to_memory_format(x, False) is x and to_memory_format(torch.rand(3, 4), True).dim() == 2
    both = to_memory_format({"a": x, "b": torch.arange(3)}, True)
    assert both["a"].is_contiguous(memory_format=torch.channels_last) and both["b"].dim() == 1


@pytest.mark.filterwarnings("ignore:.*CUDA is not available.*")
def test_auto_precision_takes_bf16_only_where_it_is_native(monkeypatch):
    # A V100/T4: bf16 "supported" only through emulation, which is far slower than fp16 with a scaler.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", torch.device("cuda"), warn=False).name == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100
    assert resolve_precision("auto", torch.device("cuda"), warn=False).name == "bf16"


def test_cuda_defaults_set_cudnn_benchmark_and_tf32_and_leave_cpu_alone(monkeypatch):
    from ssl_pretrain.utils.precision import configure_cuda

    flags = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        configure_cuda(CPU, True, True)
        assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == flags[:2]
        configure_cuda(torch.device("cuda"), True, True)
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        configure_cuda(torch.device("cuda"), False, False)
        assert not torch.backends.cudnn.benchmark and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def test_every_command_applies_the_cuda_settings(monkeypatch, fashion_mnist_root, tmp_path):
    from ssl_pretrain import build
    from ssl_pretrain.cli import main

    from ..helpers import TINY

    args = ["-c", "configs/fashion_mnist/dae.yaml", *TINY, f"data.root={fashion_mnist_root}", "data.download=false"]
    args += [f"output_dir={tmp_path}", "run_name=run", "trainer.tf32=false"]
    assert main(["pretrain", *args]) == 0
    seen = []
    monkeypatch.setattr(build, "configure_cuda", lambda device, benchmark, tf32: seen.append((device, benchmark, tf32)))
    evaluate = [*args, f"evaluation.encoder={tmp_path / 'run'}", "finetune.epochs=1"]
    for command in ("probe", "knn", "finetune"):
        assert main([command, *evaluate]) == 0
        assert seen.pop() == (CPU, True, False), f"{command} applies trainer.cudnn_benchmark and trainer.tf32"
