"""Fine-tuning strategies: which encoder stages are frozen, train/eval modes, learning-rate groups.

``freeze_until``: ``None`` fine-tunes everything (*full*); a stage name freezes that stage and every
stage before it and trains the rest (*partial*); ``"all"`` freezes the whole encoder (*head only*).
Frozen stages get no gradients and stay in eval mode, so their BatchNorm statistics do not move
either; ``freeze_bn`` also keeps the trainable stages' BatchNorm statistics fixed.
"""

from __future__ import annotations

import torch
from torch import nn

from ...encoders import Encoder
from ...errors import ConfigError
from ...utils.optim import nesterov_sgd


def strategy_name(freeze_until: str | None) -> str:
    return "full" if freeze_until is None else "head_only" if freeze_until == "all" else "partial"


def frozen_stages(encoder: Encoder, freeze_until: str | None) -> list[str]:
    """The stage names to freeze, in order; a name the encoder does not have is a config error."""
    if freeze_until is None:
        return []
    if freeze_until == "all":
        return list(encoder.stage_names)
    if freeze_until not in encoder.stage_names:
        accepted = ", ".join(["null (full)", *encoder.stage_names, "all (head only)", "auto"])
        raise ConfigError("finetune.freeze_until", f"unknown stage {freeze_until!r}; accepted: {accepted}")
    return encoder.stage_names[: encoder.stage_names.index(freeze_until) + 1]


class FreezePlan:
    """Applies a strategy to ``model`` (an ``ImageClassifier``: ``.encoder`` + ``.head``)."""

    def __init__(self, model: nn.Module, freeze_until: str | None, freeze_bn: bool):
        self.model = model
        self.stages = frozen_stages(model.encoder, freeze_until)
        self.strategy = strategy_name(freeze_until)
        self.freeze_bn = freeze_bn
        self.frozen_modules = [m for name in self.stages for m in model.encoder.stage_modules(name)]
        if self.strategy == "head_only":
            self.frozen_modules = [model.encoder]
        for module in self.frozen_modules:
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self) -> None:
        """Training mode for what is trained; eval mode for frozen stages (and BatchNorm if ``freeze_bn``)."""
        self.model.train()
        for module in self.frozen_modules:
            module.eval()
        if self.freeze_bn:
            for module in self.model.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def param_groups(self, lr: float, backbone_lr_mult: float, weight_decay: float) -> list[dict]:
        """Head at ``lr``, trainable encoder parameters at ``lr * backbone_lr_mult``; no decay on biases
        and normalisation parameters. Empty groups are left out."""
        groups = []
        for part, part_lr in ((self.model.head, lr), (self.model.encoder, lr * backbone_lr_mult)):
            params = [p for p in part.parameters() if p.requires_grad]
            for decayed in (True, False):
                chosen = [p for p in params if (p.ndim > 1) == decayed]
                if chosen:
                    name = "head" if part is self.model.head else "encoder"
                    groups.append(
                        {
                            "params": chosen,
                            "lr": part_lr,
                            "weight_decay": weight_decay if decayed else 0.0,
                            "name": name,
                        }
                    )
        return groups

    def counts(self) -> dict:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        return {"trainable_parameters": trainable, "frozen_parameters": total - trainable}


def make_finetune_optimizer(
    groups: list[dict], optimizer: str, momentum: float, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over ``groups``; ``fused`` (fp16): the kernel that takes the gradient scaler's
    inf/NaN flag on the device, so a step reads nothing back."""
    if optimizer == "sgd":
        return nesterov_sgd(groups, 1e-3, momentum, fused)  # the default lr: every group sets its own
    return torch.optim.AdamW(groups, **({"fused": True} if fused else {}))
