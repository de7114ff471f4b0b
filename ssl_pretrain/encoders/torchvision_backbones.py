"""torchvision backbones as encoders: the torchvision model itself is the trunk.

The classifier is replaced by ``nn.Identity()`` and max-pools by the parameter-free
:class:`IndexedMaxPool2d`, so the trunk's ``state_dict`` loads with ``strict=True`` into the
torchvision model whose classifier is replaced by ``nn.Identity()``. With ``in_channels != 3`` the
first convolution is rebuilt for that many channels, and ``small_input=True`` makes the stem
unstrided (and drops the stem max-pool) for 28-32 px images; ``encoder.yaml`` records both, so a
user can make the same change before loading.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from .base import IndexedMaxPool2d, TrunkParts


def _conv_like(conv: nn.Conv2d, in_channels: int, stride: int | None = None, kernel: int | None = None) -> nn.Conv2d:
    kernel = kernel or conv.kernel_size[0]
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel,
        stride if stride is not None else conv.stride,
        kernel // 2,
        groups=1,
        bias=conv.bias is not None,
    )


def _indexed_pools(module: nn.Module) -> None:
    """Replace every ``nn.MaxPool2d`` child (recursively) by an :class:`IndexedMaxPool2d` twin."""
    for name, child in module.named_children():
        if type(child) is nn.MaxPool2d:
            setattr(
                module,
                name,
                IndexedMaxPool2d(
                    child.kernel_size, child.stride, child.padding, child.dilation, ceil_mode=child.ceil_mode
                ),
            )
        else:
            _indexed_pools(child)


def find_downsamplers(
    trunk: nn.Module, stages: list[tuple[str, list[nn.Module]]], in_channels: int, size: int = 64
) -> list[nn.Module]:
    """The modules among the stage lists whose output is spatially smaller than their input, in order."""
    found: list[nn.Module] = []

    def hook(module, inputs, output):
        if output.shape[-1] < inputs[0].shape[-1]:
            found.append(module)

    hooks = [m.register_forward_hook(hook) for _, modules in stages for m in modules]
    was_training = trunk.training
    trunk.eval()
    try:
        x = torch.zeros(1, in_channels, size, size)
        with torch.no_grad():
            for _, modules in stages:
                for module in modules:
                    x = module(x)
    finally:
        trunk.train(was_training)
        for h in hooks:
            h.remove()
    return found


def _parts(trunk: nn.Module, stages, in_channels: int, num_features: int, name: str) -> TrunkParts:
    _indexed_pools(trunk)
    stages = [(stage, [_resolve(trunk, m) for m in modules]) for stage, modules in stages]
    return TrunkParts(trunk, stages, find_downsamplers(trunk, stages, in_channels), num_features, name)


def _resolve(trunk: nn.Module, path: str) -> nn.Module:
    return trunk.get_submodule(path)


def _resnet(name: str, in_channels: int, small_input: bool) -> TrunkParts:
    model = getattr(torchvision.models, name)(weights=None)
    if small_input:
        model.conv1 = _conv_like(model.conv1, in_channels, stride=1, kernel=3)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = _conv_like(model.conv1, in_channels)
    num_features = model.fc.in_features
    model.fc = nn.Identity()
    stages = [("stem", ["conv1", "bn1", "relu", "maxpool"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]
    return _parts(model, stages, in_channels, num_features, name)


def resnet18(in_channels: int, *, small_input: bool = False) -> TrunkParts:
    """torchvision ResNet-18 (512 features); ``small_input``: 3x3 unstrided stem, no max-pool."""
    return _resnet("resnet18", in_channels, small_input)


def resnet50(in_channels: int, *, small_input: bool = False) -> TrunkParts:
    """torchvision ResNet-50 (2048 features); ``small_input``: 3x3 unstrided stem, no max-pool."""
    return _resnet("resnet50", in_channels, small_input)


def vgg11_bn(in_channels: int, *, small_input: bool = False) -> TrunkParts:
    """torchvision VGG-11-BN (512 features, GAP); ``small_input`` drops the last two max-pools."""
    model = torchvision.models.vgg11_bn(weights=None)
    if in_channels != 3:
        model.features[0] = _conv_like(model.features[0], in_channels)
    model.classifier = nn.Identity()
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    if small_input:
        for i in pools[-2:]:
            model.features[i] = nn.Identity()
    stages, start = [], 0
    for n, end in enumerate(pools, 1):
        stages.append((f"block{n}", [f"features.{i}" for i in range(start, end + 1)]))
        start = end + 1
    return _parts(model, stages, in_channels, 512, "vgg11_bn")


def _stem_conv_for(model: nn.Module, in_channels: int, small_input: bool) -> None:
    conv = model.features[0][0]
    if small_input or in_channels != 3:
        model.features[0][0] = _conv_like(conv, in_channels, stride=1 if small_input else None)


def mobilenet_v2(in_channels: int, *, small_input: bool = False) -> TrunkParts:
    """torchvision MobileNetV2 (1280 features); ``small_input`` makes the stem unstrided."""
    model = torchvision.models.mobilenet_v2(weights=None)
    _stem_conv_for(model, in_channels, small_input)
    model.classifier = nn.Identity()
    groups = {
        "stem": range(0, 2),
        "stage2": range(2, 4),
        "stage3": range(4, 7),
        "stage4": range(7, 14),
        "stage5": range(14, 18),
        "head": range(18, 19),
    }
    stages = [(name, [f"features.{i}" for i in idx]) for name, idx in groups.items()]
    return _parts(model, stages, in_channels, 1280, "mobilenet_v2")


def efficientnet_b0(in_channels: int, *, small_input: bool = False) -> TrunkParts:
    """torchvision EfficientNet-B0 (1280 features); ``small_input`` makes the stem unstrided."""
    model = torchvision.models.efficientnet_b0(weights=None)
    _stem_conv_for(model, in_channels, small_input)
    model.classifier = nn.Identity()
    names = ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head"]
    stages = [(name, [f"features.{i}"]) for i, name in enumerate(names)]
    return _parts(model, stages, in_channels, 1280, "efficientnet_b0")
