"""Online evaluation during pretraining: kNN and/or linear probe on detached features, scored on a
validation split of the training labels (never the test set: a curve one may pick checkpoints by).

It observes and never steers: features are extracted under ``no_grad`` with every module in eval mode,
each module's train/eval mode is put back afterwards, and the RNG states (Python, NumPy, torch) are
saved before and restored after, so a run with online evaluation ends with weights bit-identical to the
same run without it. Its time is not counted in the run's images/s.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config, listed
from ..data import DataInfo
from ..data.loader import seeded_subset
from ..errors import BadInput
from ..evaluation.features.feature_view import FeatureView
from ..evaluation.features.features import extract_features
from ..evaluation.features.logistic import fit_logistic_regression, top1
from ..evaluation.frozen.knn import weighted_knn_predict
from ..evaluation.shared.metrics import percent_correct
from ..evaluation.shared.splits import labeled_splits, validation_split
from ..utils.precision import resolve_precision
from .observe import observing


class OnlineEvaluator:
    """Built before training (so a dataset without labels fails early); ``due`` says when, ``run`` evaluates."""

    def __init__(self, config: Config, info: DataInfo, device: torch.device):
        cfg = config.online
        self.cfg, self.config, self.info, self.device = cfg, config, info, device
        try:
            train, _ = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
        except BadInput as err:
            raise BadInput(f"online.every: online evaluation needs labeled data ({err})") from None
        train, val = validation_split(train, config.evaluation.val_fraction, config.seed)
        self.train = seeded_subset(train, cfg.train_images, config.seed)
        self.val = seeded_subset(val, cfg.val_images, config.seed + 1)
        self.last: dict[str, float] = {}

    def due(self, step: int, epochs_done: int, epoch_ended: bool) -> bool:
        if self.cfg.unit == "step":
            return not epoch_ended and step % self.cfg.every == 0
        return epoch_ended and epochs_done % self.cfg.every == 0

    def run(self, encoder: nn.Module, step: int, writer) -> dict[str, float]:
        """Evaluate ``encoder`` now; returns and logs ``{"knn_top1": ..., "probe_top1": ...}``."""
        with observing(encoder, self.device):
            results = self._evaluate(encoder)
        for name, value in results.items():
            writer.add_scalar(f"online/{name}", value, step)
        self.last = results
        return results

    @torch.no_grad()
    def _evaluate(self, encoder: nn.Module) -> dict[str, float]:
        view = FeatureView(encoder)
        batch, workers = self.config.evaluation.batch_size, self.config.data.num_workers
        precision = resolve_precision(self.config.trainer.precision, self.device, warn=False)
        train_x, train_y = extract_features(view, self.train, self.info, self.device, batch, workers, precision)
        val_x, val_y = extract_features(view, self.val, self.info, self.device, batch, workers, precision)
        train_x, val_x = train_x[view.layer], val_x[view.layer]
        num_classes = int(max(train_y.max(), val_y.max())) + 1
        results = {}
        if self.cfg.method in ("knn", "both"):
            knn = self.config.knn
            k = listed(knn.k)[0]
            predicted = weighted_knn_predict(train_x, train_y, val_x, num_classes, k, knn.temperature, knn.chunk_size)
            results["knn_top1"] = percent_correct(predicted, val_y)
        if self.cfg.method in ("probe", "both"):
            l2 = listed(self.config.probe.l2)[0]
            classifier = fit_logistic_regression(train_x, train_y, num_classes, l2, self.cfg.probe_iter)
            results["probe_top1"] = top1(classifier, val_x, val_y)
        return results
