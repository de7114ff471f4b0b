"""Classifiers on frozen features, with every choice made on validation (see :mod:`.selection`).

A *method* (the linear probe, kNN) offers candidate settings (``l2`` values, ``k`` values) and fits and
predicts on cached features. :func:`evaluate_encoder` extracts the features of every layer of a view once,
and when there is more than one candidate (several layers and/or settings) fits each on the training
labels minus a stratified validation split, keeps the best by validation top-1, refits it on all the
training labels and scores the test set once. With ``val_folds`` > 1 the validation split is each of
``val_folds`` stratified folds in turn (k-fold cross-validation): a candidate's validation top-1 is then
over every labeled image, not a tenth of them, which matters when there are a few hundred labels. With a
single candidate it fits on all the training labels and scores the test set: nothing is chosen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ...data import DataInfo
from ...errors import ConfigError
from ...utils.precision import Precision
from ..shared.metrics import percent_correct
from ..shared.selection import Selection, first_best
from ..shared.splits import too_few_to_validate, validation_folds
from .features import extract_features


class FrozenMethod(Protocol):
    """A classifier on frozen features ``(N, D)`` with labels ``(N,)``."""

    reports_train_top1: bool

    def settings(self) -> list[dict]:
        """The candidate settings, in the order ties are broken (e.g. ``[{"l2": 1e-4}]``)."""

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, setting: dict) -> Any:
        """A fitted classifier for ``setting``."""

    def predict(self, fitted: Any, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(N,)``."""


def frozen_features(
    view,
    train,
    test,
    info: DataInfo,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
    precision: Precision | None = None,
):
    """``(train_x, train_y, test_x, test_y)``, ``x`` as ``{layer: (N, D)}``, from the frozen encoder in
    eval mode, extracted once (without gradients, under ``precision``'s autocast)."""
    view = view.to(device).eval()
    return (
        *extract_features(view, train, info, device, batch_size, num_workers, precision),
        *extract_features(view, test, info, device, batch_size, num_workers, precision),
    )


def evaluate_encoder(
    name: str,
    view,
    train,
    test,
    info: DataInfo,
    device: torch.device,
    method: FrozenMethod,
    *,
    batch_size: int = 512,
    num_workers: int = 0,
    val_fraction: float = 0.1,
    val_folds: int = 1,
    seed: int = 0,
    diagnostics: bool = False,
    precision: Precision | None = None,
) -> tuple[list[dict], Selection | None, Any]:
    """Rows (one per candidate: layer x setting), the selection (None with a single candidate) and the
    chosen classifier refitted on all training labels.

    Each row holds ``val_top1`` (several candidates), ``chosen``, and for the chosen row alone ``top1``
    (test) and ``train_top1``; ``diagnostic_test_top1`` on the others only when ``diagnostics``.
    """
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = frozen_features(
        view, train, test, info, device, batch_size, num_workers, precision
    )
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    extract_seconds = round(time.perf_counter() - start, 1)
    candidates = [(layer, setting) for layer in train_x for setting in method.settings()]
    if len(candidates) > 1 and not too_few_to_validate(train_y):
        search = _Search(name, view, method, num_classes, extract_seconds, diagnostics)
        rows, selection, index, kept = search.run(train_x, train_y, test_x, test_y, val_fraction, val_folds, seed)
        layer, setting = rows[index]["layer"], _setting_of(rows[index], method)
        x, layer_test = kept[layer], kept["test"]
    else:
        index, (layer, setting), selection = 0, candidates[0], None  # one candidate, or too few labels to choose
        x, layer_test = train_x.pop(layer), test_x.pop(layer)
        rows = [_row(name, view, layer, x.shape[1], setting, extract_seconds, time.perf_counter())]
        if diagnostics:  # nothing to choose by, but each setting's test top-1 for a development split to read
            rows += _fixed_diagnostics(name, view, method, layer, (x, train_y, layer_test, test_y), extract_seconds)
    t0 = time.perf_counter()
    fitted = method.fit(x, train_y, num_classes, setting)
    chosen = rows[index]
    chosen.pop("diagnostic_test_top1", None)
    chosen["top1"] = percent_correct(method.predict(fitted, layer_test), test_y)
    if method.reports_train_top1:
        chosen["train_top1"] = percent_correct(method.predict(fitted, x), train_y)
    chosen["fit_seconds"] = round(chosen["fit_seconds"] + time.perf_counter() - t0, 1)
    for i, row in enumerate(rows):
        row["chosen"] = i == index
    if selection is not None:
        selection.test_top1 = chosen["top1"]
    return rows, selection, fitted


@dataclass
class _Search:
    """Every candidate (layer x setting) of ``method`` scored on the validation folds of the training labels."""

    name: str
    view: Any
    method: FrozenMethod
    num_classes: int
    extract_seconds: float
    diagnostics: bool

    def run(self, train_x: dict, train_y, test_x: dict, test_y, val_fraction: float, folds: int, seed: int):
        """``(rows, selection, index of the best row, {best layer: its training features, "test": its test
        features})``; each layer's features are dropped once scored, unless it is the best so far."""
        if folds > len(train_y):
            raise ConfigError("evaluation.val_folds", f"is {folds}, more than the {len(train_y)} labeled images")
        splits = validation_folds(train_y, val_fraction, folds, seed)
        val_y = torch.cat([train_y[val_idx] for _, val_idx in splits])  # every fold's labels, in fold order
        rows: list[dict] = []
        kept: dict[str, torch.Tensor] = {}  # training features of the best layer so far, for the refit
        for layer in list(train_x):
            x, layer_test = train_x.pop(layer), test_x.pop(layer)
            for setting in self.method.settings():
                rows.append(self._score(layer, setting, x, train_y, val_y, splits, layer_test, test_y))
            if rows[first_best([r["val_top1"] for r in rows])]["layer"] == layer:
                kept = {layer: x, "test": layer_test}
        settings = [{"layer": r["layer"], **_setting_of(r, self.method)} for r in rows]
        scores = [r["val_top1"] for r in rows]
        selection = Selection.from_scores(settings, scores, _validation_text(splits, val_fraction, seed))
        return rows, selection, first_best(scores), kept

    def _score(self, layer, setting, x, train_y, val_y, splits, layer_test, test_y) -> dict:
        """One candidate's row: its validation top-1 over the folds (one fit alive at a time: kNN's hold
        their features); with ``diagnostics`` the first fold's fit scored on the test set too."""
        t0 = time.perf_counter()
        predicted, first_fit = [], None
        for fit_idx, val_idx in splits:
            fitted = self.method.fit(x[fit_idx], train_y[fit_idx], self.num_classes, setting)
            predicted.append(self.method.predict(fitted, x[val_idx]))
            if self.diagnostics and first_fit is None:
                first_fit = fitted
        row = _row(self.name, self.view, layer, x.shape[1], setting, self.extract_seconds, t0)
        row["val_top1"] = percent_correct(torch.cat(predicted), val_y)
        if self.diagnostics:
            row["diagnostic_test_top1"] = percent_correct(self.method.predict(first_fit, layer_test), test_y)
        return row


def _fixed_diagnostics(name: str, view, method: FrozenMethod, layer: str, data: tuple, extract_seconds: float):
    """Rows of ``layer``'s settings but the first (the fixed recipe's), each fitted on every training label and
    scored on the test set as ``diagnostic_test_top1``: ``data`` is ``(train_x (N, D), train_y (N,), test_x
    (M, D), test_y (M,))``."""
    x, train_y, layer_test, test_y = data
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    rows = []
    for setting in method.settings()[1:]:
        t0 = time.perf_counter()
        fitted = method.fit(x, train_y, num_classes, setting)
        row = _row(name, view, layer, x.shape[1], setting, extract_seconds, t0)
        row["diagnostic_test_top1"] = percent_correct(method.predict(fitted, layer_test), test_y)
        rows.append(row)
    return rows


def validation_scores(view, fit_set, val_set, info: DataInfo, device, method: FrozenMethod, batch_size: int) -> dict:
    """``{layer: validation top-1}`` of ``method``'s first setting fitted on ``fit_set`` per layer of ``view``
    (the test set is not involved)."""
    fit_x, fit_y, val_x, val_y = frozen_features(view, fit_set, val_set, info, device, batch_size)
    num_classes = int(max(fit_y.max(), val_y.max())) + 1
    setting = method.settings()[0]
    scores = {}
    for layer in list(fit_x):
        fitted = method.fit(fit_x.pop(layer), fit_y, num_classes, setting)
        scores[layer] = percent_correct(method.predict(fitted, val_x.pop(layer)), val_y)
    return scores


def _validation_text(folds: list[tuple[torch.Tensor, torch.Tensor]], val_fraction: float, seed: int) -> str:
    """How the candidates were scored, for the report."""
    total = sum(len(val) for _, val in folds)
    if len(folds) == 1:
        fit, val = folds[0]
        return (
            f"stratified {val_fraction:g} of the {total + len(fit)} labeled training images ({len(val)}; "
            f"seed {seed}); candidates fitted on the other {len(fit)}"
        )
    return (
        f"stratified {len(folds)}-fold cross-validation over the {total} labeled training images (seed {seed}): "
        f"each candidate fitted {len(folds)} times, on about {len(folds[0][0])}, and scored on the images left "
        f"out; top-1 over all {total}"
    )


def _setting_of(row: dict, method: FrozenMethod) -> dict:
    return {key: row[key] for key in method.settings()[0]}


def _row(name: str, view, layer: str, dim: int, setting: dict, extract_seconds: float, t0: float) -> dict:
    return {
        "encoder": name,
        "layer": layer,
        "pooling": view.pooling_of(layer),
        "feature_dim": dim,
        **setting,
        "extract_seconds": extract_seconds,
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }


def format_table(rows: list[dict], setting_keys: list[str]) -> str:
    """Rows of encoder, layer, size, setting, validation top-1 (when chosen on validation), test top-1 of
    the chosen candidate (``-`` for the others) and train top-1."""
    has_val = any("val_top1" in r for r in rows)
    head = f"{'encoder':<12} {'layer':<16} {'dim':>6}" + "".join(f" {k:>8}" for k in setting_keys)
    head += (f" {'top-1 val':>9}" if has_val else "") + f" {'top-1 test':>10} {'top-1 train':>11}"
    lines = [head]
    for r in rows:
        line = f"{r['encoder']:<12} {r['layer']:<16} {r['feature_dim']:>6}" + "".join(
            f" {r[k]:>8g}" for k in setting_keys
        )
        if has_val:
            line += f" {r['val_top1']:>9.2f}" if "val_top1" in r else f" {'-':>9}"
        line += f" {r['top1']:>10.2f}" if "top1" in r else f" {'-':>10}"
        line += f" {r['train_top1']:>11.2f}" if "train_top1" in r else f" {'-':>11}"
        lines.append(line + (" <- chosen on validation" if r["chosen"] and has_val else ""))
    return "\n".join(lines)
