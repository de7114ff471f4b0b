"""``ssl-pretrain ensemble``: combine fine-tuned or probed models and report each member and the ensemble.

Members are fine-tuning runs (their ``checkpoints/best.pt``), fine-tuning checkpoints or a probe's
``probe_classifier.pt``. Weights (``weighted``) and the stacking head are learned on a validation split:
the stratified ``ensemble.val_fraction`` of the labeled training images, drawn with the run's seed exactly
as ``finetune`` draws its own, so with the same seed and fraction fine-tuned members never trained on it
(``member_saw_validation`` says so per member; probes trained on every training image).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...config import Config
from ...errors import BadInput, ConfigError
from ...runs import write_json
from ...utils.files import atomic_torch_save
from ..shared.classifier import classifier_file, load_classifier
from ..shared.metrics import percent_correct
from ..shared.predict import accuracy, predict_logits
from ..shared.reports import EnsembleReport
from ..shared.splits import TOO_FEW_TO_SPLIT, labeled_splits, too_few_to_validate, validation_split
from .voting import accuracy_weights, fit_stacking, hard_vote, soft_vote, stacking_features


def _saw_validation(info: dict, split: tuple[int, float, float]) -> bool | None:
    """Whether a member trained on the ensemble's validation images: a probe did (every training image);
    a fine-tuned model held out the same ones when its ``split`` (seed, label fraction, validation fraction)
    is the ensemble's; None when that cannot be told."""
    protocol = info.get("protocol", {})
    if info.get("kind") == "linear probe":
        return True
    same = (protocol.get("seed"), protocol.get("label_fraction"), protocol.get("val_fraction")) == split
    return False if same else None


def run_ensemble(config: Config, device: torch.device) -> EnsembleReport:
    """Each member and the ensemble (``ensemble.method``) scored on validation and test; ``ensemble-<method>.json``
    written to ``ensemble.output`` (default ``<output_dir>/ensemble``)."""
    cfg = config.ensemble
    if len(cfg.members) < 2:
        raise ConfigError("ensemble.members", f"needs at least 2 models, got {len(cfg.members)}")
    if cfg.weights is not None and len(cfg.weights) != len(cfg.members):
        raise ConfigError("ensemble.weights", f"needs one weight per member ({len(cfg.members)}), got {cfg.weights}")
    paths = [classifier_file(member, "ensemble.members") for member in cfg.members]
    loaded = [(path, *load_classifier(path, "ensemble member")) for path in paths]
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    val = _validation(train, cfg.method, cfg.weights, cfg.val_fraction, config.seed)
    split = (config.seed, config.data.label_fraction, cfg.val_fraction)

    members, val_probs, test_probs, val_y, test_y = _score_members(loaded, val, test, device, split)
    classes = {p.shape[1] for p in test_probs}
    if len(classes) != 1:
        raise BadInput(f"ensemble.members: the models predict different numbers of classes ({sorted(classes)})")
    val_probs, test_probs = torch.stack(val_probs), torch.stack(test_probs)

    weights = None
    if cfg.method == "weighted":
        given = cfg.weights is not None
        weights = (
            torch.tensor(cfg.weights, dtype=torch.float64)
            if given
            else accuracy_weights([m["val_top1"] for m in members])
        )
    out_dir = Path(cfg.output) if cfg.output else Path(config.output_dir) / "ensemble"
    head = fit_stacking(val_probs, val_y) if cfg.method == "stacking" else None
    if head is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(head.__dict__, out_dir / "stacking_head.pt")
    top1 = percent_correct(_combine(cfg.method, test_probs, weights, head), test_y)
    val_top1 = percent_correct(_combine(cfg.method, val_probs, weights, head), val_y)
    report = EnsembleReport(
        ensemble_top1=top1,
        ensemble_val_top1=val_top1,
        members=members,
        protocol={
            "method": cfg.method,
            "weights": None if weights is None else [round(float(w), 4) for w in weights],
            "weights_from": None if weights is None else ("given" if cfg.weights is not None else "validation top-1"),
            "stacking_head": "logistic regression on members' log-probabilities" if cfg.method == "stacking" else None,
            "val_split": f"stratified {cfg.val_fraction:g} of the labeled training images, {len(val)} images",
            "test_split": f"{test.description}, {len(test)} images",
            "label_fraction": config.data.label_fraction,
            "seed": config.seed,
        },
        report_file=str(out_dir / f"ensemble-{cfg.method}.json"),
    )
    write_json(out_dir / f"ensemble-{cfg.method}.json", report.to_dict())
    return report


def _validation(train, method: str, weights: list | None, fraction: float, seed: int):
    """The validation split, as fine-tuning draws it; empty with too few labels (members are then scored on the
    test set alone, and a method that learns on validation is refused)."""
    if not too_few_to_validate(train.labels):
        return validation_split(train, fraction, seed)[1]
    if method == "stacking" or (method == "weighted" and weights is None):
        raise ConfigError("ensemble.method", f"{method} learns on validation, but {TOO_FEW_TO_SPLIT}; use soft or hard")
    return train.subset(torch.zeros(0, dtype=torch.long))


def _score_members(loaded: list, val, test, device: torch.device, split: tuple):
    """``(member records, validation probabilities, test probabilities, validation labels, test labels)``: each
    ``(path, model, info)`` of ``loaded`` scored on ``val`` and ``test``, one model on the device at a time."""
    members, val_probs, test_probs = [], [], []
    for path, model, info in loaded:
        model.to(device)
        v_logits, val_y = predict_logits(model, val, device)
        t_logits, test_y = predict_logits(model, test, device)
        model.cpu()
        val_probs.append(v_logits.softmax(dim=1))
        test_probs.append(t_logits.softmax(dim=1))
        members.append(
            {
                "model": str(path),
                "kind": info.get("kind"),
                "val_top1": accuracy(v_logits, val_y),
                "test_top1": accuracy(t_logits, test_y),
                "member_saw_validation": _saw_validation(info, split),
            }
        )
    return members, val_probs, test_probs, val_y, test_y


def _combine(method: str, probs: torch.Tensor, weights: torch.Tensor | None, head) -> torch.Tensor:
    """The ensemble's predicted classes ``(N,)`` from the members' probabilities ``(M, N, K)``."""
    if method == "stacking":
        return head.predict(stacking_features(probs))
    if method == "hard":
        return hard_vote(probs)
    return soft_vote(probs, weights)


def _top1(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_ensemble(report: EnsembleReport) -> str:
    lines = [f"{'model':<60} {'val top-1':>9} {'test top-1':>10}"]
    for m in report.members:
        lines.append(f"{m['model'][-60:]:<60} {_top1(m['val_top1']):>9} {m['test_top1']:>10.2f}")
    method, val = report.protocol["method"], report.ensemble_val_top1
    lines.append(f"{'ensemble (' + method + ')':<60} {_top1(val):>9} {report.ensemble_top1:>10.2f}")
    lines.append(f"{Path(report.report_file).name} written to {Path(report.report_file).parent}")
    return "\n".join(lines)
