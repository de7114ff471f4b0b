"""``ssl-pretrain finetune``: train encoder + linear head on labeled data with a freezing strategy.

Reads the encoder from ``evaluation.encoder`` (pretrained, or re-initialised with ``finetune.init=random``:
supervised training from scratch, the control), holds out a stratified validation split of the
(label-fraction) training labels, trains ``finetune.epochs`` epochs (or ``finetune.steps`` steps) with
on-device Kornia augmentation, logs per-epoch validation top-1 to TensorBoard, keeps
``checkpoints/best.pt`` (best validation top-1, or with ``finetune.keep=last`` the last epoch) and
``checkpoints/last.pt``, and reports in
``finetune.json`` the test top-1 of the checkpoint chosen on validation, with the protocol. Output:
``<encoder's run>/finetune/<finetune.name>/``.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
from pathlib import Path

import torch

from ...build import checked_encoder
from ...config import Config, DataConfig, FinetuneConfig, ProbeConfig, listed, model_label, save_config
from ...data import DataInfo, open_split
from ...encoders import Encoder, encoder_from_spec
from ...errors import BadInput
from ...registry import UNLABELED_METHODS
from ...runs import write_json
from ..features.layer_view import LayerView, available_layers
from ..features.logistic import LogisticProbe
from ..features.method import validation_scores
from ..shared.classifier import ImageClassifier, load_classifier
from ..shared.encoder_source import load_encoder, results_dir
from ..shared.predict import accuracy, predict_logits
from ..shared.reports import FinetuneReport
from ..shared.selection import RULE as SELECTION_RULE
from ..shared.selection import Selection, first_best
from ..shared.splits import NOTHING_TO_CHOOSE, TOO_FEW, labeled_splits, too_few_to_validate, validation_split
from .auto_freeze import choose_freeze_point
from .few_labels import fixed_recipe
from .freezing import FreezePlan, frozen_stages, strategy_name
from .head_init import init_head_from_probe
from .loop import Candidate, LabeledData, LoopOptions, Recipe, encoder_lr_mult, fit_candidate
from .unlabeled import Unlabeled, UnlabeledMethod, unlabeled_pool


def unlabeled_method(cfg: FinetuneConfig) -> UnlabeledMethod:
    """The method of ``finetune.unlabeled`` (a registered class) with its options."""
    return UNLABELED_METHODS[cfg.unlabeled.method](**cfg.unlabeled.options)


def candidate_settings(cfg: FinetuneConfig, method: UnlabeledMethod) -> list[dict]:
    """Every combination of the listed values of ``finetune.lr``, ``finetune.augment``, ``finetune.steps`` (when
    a list), ``finetune.model`` (by :func:`model_label`) and the method's grid options (FixMatch: ``ratio``,
    ``threshold``), in the order given: the candidates chosen between on validation."""
    grid = {"lr": listed(cfg.lr), "augment": listed(cfg.augment)}
    if isinstance(cfg.steps, list):
        grid["steps"] = cfg.steps
    if cfg.model is not None:
        grid["model"] = [model_label(entry) for entry in listed(cfg.model)]
    grid.update({key: listed(method.options[key]) for key in method.grid})
    return [dict(zip(grid, combination, strict=True)) for combination in itertools.product(*grid.values())]


def scratch_models(cfg: FinetuneConfig, spec, freeze_until: str | None) -> dict[str, Encoder]:
    """``{label: untrained encoder}`` of each ``finetune.model`` entry, for images of the pretrained encoder's
    ``spec``; each built once here so that a bad option, input size or freeze point stops the run before
    anything is written."""
    models = {}
    for entry in listed(cfg.model) if cfg.model is not None else []:
        options = {key: value for key, value in entry.items() if key != "backbone"}
        encoder = checked_encoder(entry["backbone"], options, DataInfo.from_spec(spec), "finetune.model")
        frozen_stages(encoder, freeze_until)
        models[model_label(entry)] = encoder
    return models


def run_finetune(config: Config, device: torch.device) -> FinetuneReport:
    """Fine-tune; returns the report also written to ``finetune.json``.

    Every choice is made on the validation split: the epoch (the best validation epoch's weights are
    kept, unless ``finetune.keep=last`` keeps the end of the schedule), the learning rate (and with
    ``finetune.unlabeled=fixmatch`` the threshold and unlabeled ratio) when several are listed (one
    candidate run each, under ``candidates/``), the freeze point with ``auto``. The test set is scored
    once, for the choice; with ``finetune.test_last_epoch`` the last epoch's test top-1 too, a diagnostic.
    """
    cfg = config.finetune
    if config.evaluation.encoder is None:
        raise BadInput("evaluation.encoder: is required: the run directory, encoder.pt or checkpoint to fine-tune")
    pretrained = load_encoder(config.evaluation.encoder)
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    cfg, train, val = _validation(cfg, train, config.seed)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    out_dir = _finetune_dir(cfg, config.data.label_fraction, Path(config.evaluation.encoder))
    method = unlabeled_method(cfg)
    unlabeled = _unlabeled(config.data, config.seed, val, cfg.pseudo_label_accuracy) if method.uses_pool else None
    options = LoopOptions(
        config.seed, config.data.num_workers, config.trainer.channels_last, config.trainer.log_every,
        config.trainer.progress, config.trainer.precision,
    )  # fmt: skip

    freeze_until, reason, layer_top1 = cfg.freeze_until, None, None
    if freeze_until == "auto":
        freeze_until, reason, layer_top1 = _auto_freeze_point(
            cfg, config.probe, config.evaluation.batch_size, config.seed, pretrained, train, val, num_classes, device
        )
    scratch = scratch_models(cfg, pretrained.spec, freeze_until)  # {} unless finetune.model is set
    if not scratch:
        frozen_stages(pretrained, freeze_until)  # an unknown stage is a config error before anything is written
    method.check(pretrained, len(unlabeled.pool) if unlabeled else 0, config.seed)  # so is a method that cannot train
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    settings = candidate_settings(cfg, method)
    recipe, data = Recipe.from_config(cfg, method), LabeledData(train, val, unlabeled)
    histories = []
    for setting in settings:
        torch.manual_seed(config.seed)
        encoder = _start(cfg.init, pretrained, scratch.get(setting.get("model")))
        model = ImageClassifier(encoder, num_classes, 1 if cfg.head == "gap" else None, pretrained.spec.image_size)
        plan = FreezePlan(model, freeze_until, cfg.freeze_bn)
        if cfg.head_init == "probe":
            init_head_from_probe(model, train, device, listed(config.probe.l2)[0], config.probe.max_iter)
        protocol = _protocol(cfg, method, plan, model, freeze_until, reason, (train, val, test), setting, unlabeled)
        protocol.update(label_fraction=config.data.label_fraction, encoder_source=str(config.evaluation.encoder))
        protocol["seed"] = config.seed
        if layer_top1 is not None:
            protocol["auto_probe_val_top1"] = layer_top1
        run_dir = out_dir if len(settings) == 1 else out_dir / "candidates" / _candidate_name(setting, settings)
        candidate = Candidate(model, plan, setting, run_dir, protocol)
        histories.append(fit_candidate(recipe, options, candidate, data, device))
    validation = f"stratified {cfg.val_fraction:g} of the labeled training images ({len(val)}; seed {config.seed})"
    validation = validation if len(val) else TOO_FEW if too_few_to_validate(train.labels) else NOTHING_TO_CHOOSE
    report = _choose_and_test(settings, histories, validation, out_dir, test, device, cfg.test_last_epoch)
    write_json(out_dir / "finetune.json", report.to_dict())
    return report


def _validation(cfg: FinetuneConfig, train, seed: int):
    """``(recipe, train, val)``: the stratified ``finetune.val_fraction`` held out where something is chosen on
    it (or ``finetune.validation=always``); else every label trains and the validation split is empty, and with
    too few labels to validate the recipe is the fixed one."""
    empty = train.subset(torch.zeros(0, dtype=torch.long))
    if too_few_to_validate(train.labels):
        return fixed_recipe(cfg), train, empty
    if cfg.validation == "auto" and not _chooses(cfg):
        return cfg, train, empty
    return (cfg, *validation_split(train, cfg.val_fraction, seed))


def _chooses(cfg: FinetuneConfig) -> bool:
    """Whether anything is chosen on validation: the best epoch, the freeze point (``auto``), a candidate."""
    return cfg.keep == "best" or cfg.freeze_until == "auto" or len(candidate_settings(cfg, unlabeled_method(cfg))) > 1


def _start(init: str, pretrained: Encoder, scratch: Encoder | None) -> Encoder:
    """The encoder a candidate trains: a copy of the pretrained one, or a fresh one of its architecture (or
    of ``scratch``'s, a ``finetune.model`` entry), initialised under the seed set just before."""
    if init == "pretrained":
        return copy.deepcopy(pretrained)
    return encoder_from_spec(scratch.spec if scratch is not None else pretrained.spec)


def _choose_and_test(
    settings: list[dict], histories: list, validation: str, out_dir: Path, test, device, test_last: bool
) -> FinetuneReport:
    """The candidate with the best kept validation top-1 becomes the run's (its checkpoints adopted), its
    kept weights scored on ``test`` once; with ``test_last`` (and the best epoch kept) also the last
    epoch's, as a diagnostic."""
    keep = histories[0].keep
    selection = Selection.from_scores(
        [{**setting, "epoch": h.kept_epoch} for setting, h in zip(settings, histories, strict=True)],
        [h.kept_val_top1 for h in histories],
        validation + ("; each candidate scored at its last epoch" if keep == "last" else ""),
    )
    chosen = histories[first_best([h.kept_val_top1 for h in histories])]
    if len(settings) > 1:
        _adopt_candidate(chosen.out_dir, out_dir)
    selection.test_top1 = _test_top1(out_dir / "checkpoints" / "best.pt", test, device)
    diagnostics = {"pseudo_label_study": chosen.pseudo_label_study} if chosen.pseudo_label_study else {}
    if test_last and keep == "best":  # with the last epoch kept, best.pt already is the last epoch
        diagnostics["test_top1_last_epoch"] = _test_top1(out_dir / "checkpoints" / "last.pt", test, device)
    return FinetuneReport(
        test_top1=selection.test_top1,
        val_top1=selection.val_top1,
        best_epoch=chosen.kept_epoch,
        val_top1_per_epoch=chosen.val_top1,
        selected=selection.to_dict(),
        diagnostics={**diagnostics, "note": "not used for any choice"},
        train_seconds=round(sum(h.seconds for h in histories), 1),
        protocol=chosen.protocol,
        report_file=str(out_dir / "finetune.json"),
    )


def format_finetune(report: FinetuneReport) -> str:
    """What was chosen, its test top-1, the diagnostic last epoch (when the best is kept), where the run was
    written."""
    protocol, selected = report.protocol, report.selected
    lines = []
    if protocol["auto_reason"]:
        lines.append(f"finetune.freeze_until=auto -> {protocol['freeze_until']}: {protocol['auto_reason']}")
    chosen = ", ".join(f"{k} {_text(v).lstrip('-')}" for k, v in selected["chosen"].items() if k != "epoch")
    last = report.diagnostics.get("test_top1_last_epoch")
    lines.append(
        f"fine-tuned ({protocol['strategy']}, {protocol['init']} init, {chosen}): test top-1 "
        f"{report.test_top1:.2f}% at the {_kept_text(protocol['keep'])} {report.best_epoch} "
        + (f"(validation {report.val_top1:.2f}%)" if report.val_top1 is not None else _no_validation(selected))
        + ("" if last is None else f"; last epoch {last:.2f}% (diagnostic)")
    )
    study = report.diagnostics.get("pseudo_label_study")
    if study:
        check = study[-1]
        lines.append(
            f"pseudo-labels at epoch {check['epoch']} (study only): {check['pseudo_label_coverage']:.1f}% of the "
            f"checked pool images confident, {check['pseudo_label_accuracy']:.1f}% of those right; "
            f"{check['prediction_accuracy']:.1f}% of all predictions right"
        )
    out_dir = Path(report.report_file).parent
    lines.append(f"finetune.json, checkpoints/best.pt, checkpoints/last.pt and tb/ written to {out_dir}")
    return "\n".join(lines)


def _no_validation(selected: dict) -> str:
    why = "too few labels" if selected["validation"].startswith(TOO_FEW) else "nothing to choose"
    return f"(no validation: {why})"


def _kept_text(keep: str) -> str:
    return "best validation epoch" if keep == "best" else "last epoch"


def _candidate_name(setting: dict, settings: list[dict]) -> str:
    """``lr0.01`` or ``lr0.01-threshold0.9``: the keys whose value differs between candidates."""
    varying = [key for key in setting if len({s[key] for s in settings}) > 1]
    return "-".join(f"{key}{_text(setting[key])}" for key in varying)


def _text(value) -> str:
    """A candidate's value in a name: ``0.01``, or ``-strong`` for a word (``augment-strong``)."""
    return f"{value:g}" if isinstance(value, float) else f"-{value}"


def _unlabeled(data: DataConfig, seed: int, val, study_accuracy: bool) -> Unlabeled:
    """The unlabeled pool (every training image outside the validation split, labels removed) and, with
    ``finetune.pseudo_label_accuracy``, a labeled copy of 2000 of its images for the study-only check."""
    everything = open_split(data, "pool")  # every training image, labeled by data.labels or not
    pool = unlabeled_pool(everything, val)
    study = None
    if study_accuracy:
        keep = ~torch.isin(everything.origin, val.origin) & (everything.labels >= 0)
        order = keep.nonzero().flatten()
        sample = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))[:2000]]
        study = everything.subset(sample.sort().values)
    return Unlabeled(pool, study)


def _test_top1(path: Path, test, device: torch.device) -> float:
    """The test top-1 of a fine-tuning checkpoint (rebuilt from its own spec: candidates may differ in
    architecture)."""
    model, _ = load_classifier(path)
    return accuracy(*predict_logits(model.to(device), test, device))


def _adopt_candidate(candidate: Path, out_dir: Path) -> None:
    """The chosen candidate's checkpoints become the run's (hard links, or copies across filesystems)."""
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt"):
        target = out_dir / "checkpoints" / name
        try:
            os.link(candidate / "checkpoints" / name, target)
        except OSError:
            shutil.copyfile(candidate / "checkpoints" / name, target)


def _finetune_dir(cfg: FinetuneConfig, label_fraction: float, encoder_source: Path) -> Path:
    name = cfg.name
    if name is None:
        name = f"{cfg.freeze_until or 'full'}-labels{label_fraction:g}-{cfg.init}"
    out_dir = results_dir(encoder_source) / "finetune" / name
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"finetune.name: {out_dir} already holds a fine-tuning run; choose another finetune.name")
    return out_dir


def _auto_freeze_point(
    cfg: FinetuneConfig, probe: ProbeConfig, batch_size: int, seed: int, encoder, train, val, num_classes, device
):
    """Multi-layer probe on (a sample of) the labeled training split, scored on the validation split."""
    sample = train
    if len(train) > cfg.auto_probe_images:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        sample = train.subset(order[: cfg.auto_probe_images].sort().values)
    view = LayerView(encoder, available_layers(encoder), probe.layer_dim, encoder.spec.image_size)
    info = DataInfo.from_spec(encoder.spec)
    method = LogisticProbe([listed(probe.l2)[0]], probe.max_iter)
    layer_top1 = validation_scores(view, sample, val, info, device, method, batch_size)
    per_class = len(train) / num_classes
    freeze_until, reason = choose_freeze_point(layer_top1, encoder.stage_names, per_class, cfg.small_per_class)
    return freeze_until, reason, layer_top1


def _protocol(
    cfg: FinetuneConfig, method: UnlabeledMethod, plan, model, freeze_until, reason, splits, setting: dict, unlabeled
) -> dict:
    """What a candidate does, as data: strategy, rates, splits, the semi-supervised settings."""
    train, val, test = splits
    lr = setting["lr"]
    pool = unlabeled and f"{unlabeled.pool.description}, {len(unlabeled.pool)} images (validation split excluded)"
    semi = method.record(setting, pool or "")
    return {
        "strategy": strategy_name(freeze_until),
        "freeze_until": freeze_until,
        "auto_reason": reason,
        "frozen_stages": plan.stages,
        **plan.counts(),
        "init": cfg.init,
        "head": model.head_description,
        "head_init": cfg.head_init,
        "keep": cfg.keep,
        "lr_head": lr,
        "lr_encoder": lr * encoder_lr_mult(cfg.backbone_lr_mult, cfg.init),
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "batch_size": cfg.batch_size,
        "freeze_bn": cfg.freeze_bn,
        "augmentation": setting["augment"],
        "train_split": f"{train.description}, {len(train)} images",
        "val_split": f"stratified {cfg.val_fraction:g} of the labeled training images, {len(val)} images"
        if len(val)
        else "none: every label trains",
        "val_fraction": cfg.val_fraction,
        "selection": SELECTION_RULE,
        "test_split": f"{test.description}, {len(test)} images",
        "image_size": model.image_size,
        "backbone": model.encoder.spec.backbone,
        "encoder_options": model.encoder.spec.options,
        "candidates": candidate_settings(cfg, method),
        "semi_supervised": semi,
    }
