"""A trained downstream model: encoder + linear head, saved as one ``classifier.pt``.

Fine-tuning writes it (``best.pt``/``last.pt`` hold it too) and the linear probe writes one with its
standardisation folded into the head, so ensembles and Grad-CAM take either. The head reads

- ``grid = 1``: the last stage globally average-pooled, ``(B, C)``;
- ``grid = k``: the last stage average-pooled to ``k x k`` and flattened, ``(B, C*k*k)``;
- ``grid = None``: the last stage flattened as it is, ``(B, C*h*w)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import Encoder, encoder_from_spec
from ...errors import BadInput
from ...utils.files import atomic_torch_save, load_state_strict, safe_torch_load

FORMAT = "ssl_pretrain.classifier/1"


class ImageClassifier(nn.Module):
    """Images ``(B, C, S, S)`` in [0, 1] -> logits ``(B, num_classes)``."""

    def __init__(self, encoder: Encoder, num_classes: int, grid: int | None, image_size: int):
        super().__init__()
        self.encoder = encoder
        self.grid = grid
        self.image_size = image_size
        self.num_classes = num_classes
        self.head = nn.Linear(self.head_inputs(), num_classes)

    def head_inputs(self) -> int:
        with torch.no_grad():
            was_training = self.encoder.training
            size, device = self.image_size, self.encoder.mean.device
            x = torch.zeros(1, self.encoder.spec.in_channels, size, size, device=device)
            dim = self.features(self.encoder.eval().forward_maps(x)).shape[1]
            self.encoder.train(was_training)
        return dim

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """Last-stage maps ``(B, C, h, w)`` -> head inputs ``(B, D)``."""
        if self.grid is None:
            return maps.flatten(1)
        if self.grid == 1:
            return maps.mean(dim=(2, 3))
        return F.adaptive_avg_pool2d(maps, self.grid).flatten(1)

    @property
    def head_description(self) -> str:
        if self.grid is None:
            return "linear on the flattened last stage"
        if self.grid == 1:
            return "linear on global average pooling"
        return f"linear on the last stage average-pooled to {self.grid}x{self.grid}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.encoder.forward_maps(x)))


def classifier_state(model: ImageClassifier, info: dict) -> dict:
    """``model`` as plain tensors and data (``info`` says how it was trained), loadable with weights_only."""
    return {
        "format": FORMAT,
        "encoder_spec": model.encoder.spec.to_dict(),
        "encoder": {k: v.detach().cpu() for k, v in model.encoder.trunk.state_dict().items()},
        "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
        "grid": model.grid,
        "image_size": model.image_size,
        "num_classes": model.num_classes,
        "info": info,
    }


def save_classifier(model: ImageClassifier, path: Path, info: dict) -> None:
    atomic_torch_save(classifier_state(model, info), path)


def classifier_file(source: str, key: str) -> Path:
    """The file behind config key ``key``: a fine-tuning run directory -> its ``checkpoints/best.pt``;
    a file as it is."""
    path = Path(source).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.pt"
        if not best.is_file():
            raise BadInput(f"{key}: {path} is a directory without checkpoints/best.pt")
        return best
    if not path.is_file():
        raise BadInput(f"{key}: {path} does not exist")
    return path


def restore_weights(model: ImageClassifier, state: dict, path: Path) -> None:
    """Load the encoder and head weights of a :func:`classifier_state` into ``model``, strictly."""
    load_state_strict(model.encoder.trunk, state["encoder"], path, f"its {state['encoder_spec']['backbone']} encoder")
    load_state_strict(model.head, state["head"], path, "its head")


def load_classifier(path: Path, what: str = "classifier") -> tuple[ImageClassifier, dict]:
    """``(model, info)`` from a file written by :func:`save_classifier` (or a fine-tuning checkpoint)."""
    path = Path(path)
    state = safe_torch_load(path, what)
    if isinstance(state, dict) and "classifier" in state:  # a fine-tuning checkpoint
        state = state["classifier"]
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadInput(
            f"{what} {path} is not an ssl_pretrain classifier ({FORMAT}): use a fine-tuning run "
            "(or its checkpoints/best.pt, last.pt) or a probe's probe_classifier.pt"
        )
    model = ImageClassifier(
        encoder_from_spec(state["encoder_spec"]), state["num_classes"], state["grid"], state["image_size"]
    )
    restore_weights(model, state, path)
    return model.eval(), dict(state["info"])


def fold_standardisation(weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """``((f - mean) / std) @ W.T + b`` as ``f @ W'.T + b'``: the probe's classifier as a plain linear layer."""
    folded = weight / std
    return folded, bias - folded @ mean
