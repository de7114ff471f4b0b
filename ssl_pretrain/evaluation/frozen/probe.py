"""``ssl-pretrain probe``: frozen-encoder linear probes, on one feature view or on every layer."""

from __future__ import annotations

from pathlib import Path

import torch

from ...build import resolve_device
from ...config import Config, listed
from ...data import DataInfo
from ...encoders import Encoder, EncoderSpec
from ...errors import ConfigError
from ...runs import write_json
from ...utils.precision import resolve_precision
from ..features.feature_view import FeatureView, RawPixels
from ..features.layer_view import LayerView
from ..features.logistic import LinearClassifier, LogisticProbe
from ..features.method import FrozenMethod, evaluate_encoder, format_table, validation_scores
from ..features.views import control_view, probe_view, task_grid
from ..shared.classifier import ImageClassifier, fold_standardisation, save_classifier
from ..shared.encoder_source import load_encoder, pretraining_saw_test, results_dir
from ..shared.reports import FrozenReport
from ..shared.selection import RULE as SELECTION_RULE
from ..shared.splits import TOO_FEW, labeled_splits, too_few_to_validate, validation_split


def run_probe(config: Config, device: torch.device) -> FrozenReport:
    """Probe ``evaluation.encoder`` (and the controls asked for); writes ``probe.json`` and, for a single
    whole-image view, ``probe_classifier.pt`` (encoder + folded linear head). With several
    layers or ``l2`` values, the layer and ``l2`` are chosen on validation and only the choice is tested."""
    probe = config.probe
    protocol = {
        "classifier": "multinomial logistic regression, L-BFGS, full batch, standardised features",
        "l2": probe.l2,
        "max_iter": probe.max_iter,
    }
    method = LogisticProbe(listed(probe.l2), probe.max_iter, fit_device(config.device))
    return evaluate_frozen(config, device, "probe", method, protocol)


def fit_device(name: str) -> torch.device | None:
    """Where a frozen-feature classifier is fitted: the CUDA device when the run has one, else in place."""
    device = resolve_device(name)
    return device if device.type == "cuda" else None


def result_stem(command: str, fraction: float) -> str:
    """``probe``, or ``probe-labels0.1`` when evaluated on a fraction of the labels (runs do not clash)."""
    return command if fraction >= 1 else f"{command}-labels{fraction:g}"


def probe_holdout_scores(config: Config, device: torch.device) -> dict[str, float]:
    """``{layer: validation top-1}`` of a linear probe with the first ``probe.l2``, per layer of the probe's
    view (``probe.layers``, else the pooled view), fitted on the labeled training images minus a stratified
    ``evaluation.val_fraction`` of them and scored on that hold-out.

    With the same seed and fraction (``finetune.val_fraction``) it is the hold-out fine-tuning validates on,
    so a probe setting chosen some other way (e.g. by cross-validation) can be set against a fine-tuning run
    on the same images. Nothing is chosen, the test set is not scored and nothing is written.
    """
    device, _, view, info, train, _ = _frozen_inputs(config, device)
    fit, val = validation_split(train, config.evaluation.val_fraction, config.seed)
    method = LogisticProbe(listed(config.probe.l2)[:1], config.probe.max_iter, fit_device(config.device))
    return validation_scores(view, fit, val, info, device, method, config.evaluation.batch_size)


def _frozen_inputs(config: Config, device: torch.device):
    """``(device, encoder, view, info, train, test)`` of a frozen-feature evaluation of ``evaluation.encoder``:
    the probe's feature view (``probe.*``) and the labeled splits (``data.label_fraction``, seeded)."""
    if config.evaluation.encoder is None:
        raise ConfigError("evaluation.encoder", "is required: a run directory, an encoder.pt or a checkpoint")
    encoder = load_encoder(config.evaluation.encoder)
    spec = encoder.spec
    size, view = probe_view(config.probe, task_grid(config.task.name, config.task.options), spec, encoder)
    info = DataInfo.from_spec(spec, size)
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    return device, encoder, view, info, train, test


def evaluate_frozen(
    config: Config, device: torch.device, command: str, method: FrozenMethod, protocol: dict
) -> FrozenReport:
    """:func:`~.frozen.evaluate_encoder` with ``method`` on the encoder of ``evaluation.encoder`` and the
    controls of ``evaluation.control``; writes ``<command>.json``."""
    device, encoder, view, info, train, test = _frozen_inputs(config, device)
    spec = encoder.spec
    saw_test, leakage = pretraining_saw_test(Path(config.evaluation.encoder), config.data)
    options = {
        "batch_size": config.evaluation.batch_size,
        "num_workers": config.data.num_workers,
        "val_fraction": config.evaluation.val_fraction,
        "val_folds": config.evaluation.val_folds,
        "seed": config.seed,
        "diagnostics": config.probe.test_diagnostics,
        "precision": resolve_precision(config.trainer.precision, device, warn=False),
    }
    encoders = [("pretrained", view)]
    if config.evaluation.control in ("random_init", "all"):
        encoders.append(("random_init", control_view(view, spec, config.seed)))
    if config.evaluation.control in ("raw_pixels", "all"):
        encoders.append(("raw_pixels", RawPixels()))
    rows, selected, fitted = [], {}, None
    for name, encoder_view in encoders:
        encoder_rows, selection, chosen = evaluate_encoder(
            name, encoder_view, train, test, info, device, method, **options
        )
        rows += encoder_rows
        fitted = chosen if name == "pretrained" else fitted
        if selection is not None:
            selected[name] = selection.to_dict()
    out_dir = results_dir(Path(config.evaluation.encoder))
    stem = result_stem(command, config.data.label_fraction)
    report = FrozenReport(
        results=rows,
        selected=selected,
        protocol={
            **protocol,
            **_frozen_protocol(config, spec, view, info, train, test),
            "encoder_saw_test_images": saw_test,
            "test_images_check": leakage,
        },
        report_file=str(out_dir / f"{stem}.json"),
        setting_keys=list(method.settings()[0]),
    )
    if isinstance(view, FeatureView) and view.geometry is None and isinstance(fitted, LinearClassifier):
        path = out_dir / f"{stem}_classifier.pt"
        _save_probe_classifier(encoder, view.pool, info.image_size, fitted, path, report)
        report.classifier_file = path.name
    write_json(out_dir / f"{stem}.json", report.to_dict())
    return report


def format_frozen_report(report: FrozenReport) -> str:
    """The table of a probe or kNN report, a note when the encoder saw the test images, where it was written."""
    lines = [format_table(report.results, report.setting_keys)]
    if report.protocol["encoder_saw_test_images"]:
        leakage = report.protocol["test_images_check"]
        lines.append(f"note: the encoder saw the test images during pretraining (transductive): {leakage}")
    lines.append(f"{Path(report.report_file).name} written to {Path(report.report_file).parent}")
    return "\n".join(lines)


def _frozen_protocol(config: Config, spec: EncoderSpec, view, info: DataInfo, train, test) -> dict:
    return {
        "pooling": view.pooling,
        "layer_dim": view.layer_dim if isinstance(view, LayerView) else None,
        "encoder_mode": "eval, frozen",
        "augmentation": "none",
        "epochs": "features extracted once",
        "selection": TOO_FEW if too_few_to_validate(train.labels) else SELECTION_RULE,
        "val_fraction": config.evaluation.val_fraction,
        "val_folds": config.evaluation.val_folds,
        "label_fraction": config.data.label_fraction,
        "train_limit": config.evaluation.train_limit,
        "train_split": f"{train.description}, {len(train)} images",
        "test_split": f"{test.description}, {len(test)} images",
        "image_size": info.image_size,
        "patch_grid": view.geometry.__dict__ if getattr(view, "geometry", None) else None,
        "channels": info.channels,
        "encoder_source": str(config.evaluation.encoder),
        "backbone": spec.backbone,
        "seed": config.seed,
    }


def _save_probe_classifier(encoder: Encoder, pool: int, size: int, fitted, path: Path, report: FrozenReport) -> None:
    model = ImageClassifier(encoder, fitted.weight.shape[0], pool, size)
    weight, bias = fold_standardisation(fitted.weight, fitted.bias, fitted.mean, fitted.std)
    model.head.load_state_dict({"weight": weight, "bias": bias})
    top1 = report.test_top1("pretrained")
    save_classifier(model, path, {"kind": "linear probe", "protocol": report.protocol, "top1": top1})
