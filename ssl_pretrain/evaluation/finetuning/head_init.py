"""Fine-tuning's head started from a linear probe (LP-FT, ``finetune.head_init=probe``)."""

from __future__ import annotations

import torch

from ..features.features import extract_features
from ..features.logistic import fit_logistic_regression
from ..shared.classifier import ImageClassifier, fold_standardisation
from ..shared.predict import classifier_info


class HeadInputs(torch.nn.Module):
    """What the classifier's head reads, as the one layer of a frozen-feature view."""

    def __init__(self, model: ImageClassifier):
        super().__init__()
        self.model = model

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"head": self.model.features(self.model.encoder.forward_maps(x))}


def init_head_from_probe(model: ImageClassifier, train, device, l2: float, max_iter: int) -> None:
    """Start the head from a linear probe (L-BFGS on the frozen encoder's head inputs of ``train``, the
    standardisation folded in): fine-tuning then starts from a classifier that already fits the labels
    instead of a random head whose first gradients disturb the pretrained features (LP-FT, Kumar et al.
    2022), and a semi-supervised run starts with useful pseudo-labels. Draws nothing from the RNG."""
    modes = {module: module.training for module in model.modules()}
    view = HeadInputs(model.to(device))
    features, labels = extract_features(view, train, classifier_info(model), device, 512)
    for module, training in modes.items():
        module.train(training)
    fitted = fit_logistic_regression(features["head"], labels, model.num_classes, l2, max_iter)
    weight, bias = fold_standardisation(fitted.weight, fitted.bias, fitted.mean, fitted.std)
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)
