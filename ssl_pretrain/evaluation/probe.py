"""``ssl-pretrain probe``: frozen-encoder linear probes, on one feature view or on every layer."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..build import resolve_device
from ..config import Config
from ..data import DataInfo
from ..encoders import Encoder, encoder_from_spec
from ..errors import ConfigError
from ..runs import write_json
from ..tasks.patches import default_geometry
from ..train.rng import seed_everything
from .classifier import ImageClassifier, fold_standardisation, save_classifier
from .encoder_source import load_encoder, run_dir_of
from .feature_view import FeatureView, RawPixels
from .features import extract_features
from .layer_view import LayerView, available_layers
from .logistic import fit_logistic_regression, top1
from .splits import labeled_splits


def logistic_top1(train_x, train_y, test_x, test_y, num_classes: int, config: Config) -> dict:
    """Fit the probe on ``(N, D)`` training features; test and train top-1 in percent, and the fitted
    classifier under ``"classifier"`` (the caller keeps or drops it)."""
    classifier = fit_logistic_regression(train_x, train_y, num_classes, config.probe.l2, config.probe.max_iter)
    return {
        "top1": top1(classifier, test_x, test_y),
        "train_top1": top1(classifier, train_x, train_y),
        "classifier": classifier,
    }


def evaluate_encoder(name: str, view, train, test, info: DataInfo, config: Config, device, classify) -> list[dict]:
    """One result row per layer of ``view``: features of all layers extracted in one pass, then
    ``classify(train_x, train_y, test_x, test_y, num_classes, config) -> {"top1": ..., ...}`` per layer.
    Each layer's features are freed once it is classified."""
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = frozen_features(view, train, test, info, config, device)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    extract_seconds = round(time.perf_counter() - start, 1)
    rows = []
    for layer in list(train_x):
        t0 = time.perf_counter()
        dim = train_x[layer].shape[1]
        result = classify(train_x.pop(layer), train_y, test_x.pop(layer), test_y, num_classes, config)
        row = {"encoder": name, "layer": layer, "pooling": view.pooling_of(layer), "feature_dim": dim}
        row.update(result, extract_seconds=extract_seconds, fit_seconds=round(time.perf_counter() - t0, 1))
        rows.append(row)
    return rows


def frozen_features(view, train, test, info: DataInfo, config: Config, device):
    """``(train_x, train_y, test_x, test_y)``, ``x`` as ``{layer: (N, D)}``, from the frozen encoder in
    eval mode, extracted once (without gradients)."""
    view = view.to(device).eval()
    batch, workers = config.probe.batch_size, config.data.num_workers
    return (
        *extract_features(view, train, info, device, batch, workers),
        *extract_features(view, test, info, device, batch, workers),
    )


def probe_layers(config: Config, encoder: Encoder) -> list[str] | None:
    """The layers of ``probe.layers`` (``all``: every stage and ``pooled``), checked against the encoder."""
    layers = config.probe.layers
    if layers is None:
        return None
    known = available_layers(encoder)
    chosen = known if layers == "all" else [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise ConfigError("probe.layers", f"unknown layer(s) {unknown}; this encoder has: all, {', '.join(known)}")
    if config.probe.patch_grid:
        raise ConfigError("probe.layers", "cannot be combined with probe.patch_grid=true")
    return chosen


def probe_view(config: Config, spec: dict, encoder: Encoder) -> tuple[int, FeatureView | LayerView]:
    """Image size and feature view from ``probe.layers``, ``probe.resize``, ``probe.pool``,
    ``probe.patch_grid``; a relative-patch run's own grid (size, patch, gap, per-patch normalisation) is
    the default grid."""
    task = config.task.options if config.task.name == "relative_patch" else {}
    size = config.probe.resize or (task.get("resize") if config.probe.patch_grid else None) or spec["image_size"]
    layers = probe_layers(config, encoder)
    if layers is not None:
        return size, LayerView(encoder, layers, config.probe.layer_dim, size)
    if not config.probe.patch_grid:
        return size, FeatureView(encoder, config.probe.pool)
    try:
        geometry = default_geometry(size, task.get("patch"), task.get("gap"), jitter=0)
    except ValueError as err:
        raise ConfigError("probe.patch_grid", f"{err} (set probe.resize)") from None
    return size, FeatureView(encoder, config.probe.pool, geometry, bool(task.get("patch_norm", True)))


def run_probe(config: Config) -> dict:
    """Probe ``probe.encoder`` (and the controls asked for); writes ``probe.json`` and, for a single
    whole-image view, ``probe_classifier.pt`` (encoder + folded linear head); prints a table."""
    protocol = {
        "classifier": "multinomial logistic regression, L-BFGS, full batch, standardised features",
        "l2": config.probe.l2,
        "max_iter": config.probe.max_iter,
    }
    return evaluate_frozen(config, "probe", logistic_top1, protocol)


def control_view(view, spec: dict, seed: int):
    """The same view over a randomly initialised encoder of the same architecture (seeded)."""
    torch.manual_seed(seed)
    encoder = encoder_from_spec(spec)
    if isinstance(view, LayerView):
        return LayerView(encoder, view.layers, view.layer_dim, view.image_size)
    return FeatureView(encoder, view.pool, view.geometry, view.patch_norm)


def result_stem(command: str, config: Config) -> str:
    """``probe``, or ``probe-labels0.1`` when evaluated on a fraction of the labels (runs do not clash)."""
    fraction = config.data.label_fraction
    return command if fraction >= 1 else f"{command}-labels{fraction:g}"


def evaluate_frozen(config: Config, command: str, classify, protocol: dict) -> dict:
    """:func:`evaluate_encoder` with ``classify`` on the encoder of ``probe.encoder`` and the controls
    of ``probe.control``; writes ``<command>.json``, prints a table."""
    if config.probe.encoder is None:
        raise ConfigError("probe.encoder", "is required: a run directory, an encoder.pt or a checkpoint")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    encoder = load_encoder(config.probe.encoder)
    spec = encoder.spec
    size, view = probe_view(config, spec, encoder)
    info = DataInfo.from_spec(spec, size)
    train, test = labeled_splits(config)
    rows = evaluate_encoder("pretrained", view, train, test, info, config, device, classify)
    fitted = rows[0].get("classifier")
    if config.probe.control in ("random_init", "all"):
        control = control_view(view, spec, config.seed)
        rows += evaluate_encoder("random_init", control, train, test, info, config, device, classify)
    if config.probe.control in ("raw_pixels", "all"):
        rows += evaluate_encoder("raw_pixels", RawPixels(), train, test, info, config, device, classify)
    for row in rows:
        row.pop("classifier", None)
    out_dir = results_dir(Path(config.probe.encoder))
    stem = result_stem(command, config)
    report = {"results": rows, "protocol": {**protocol, **_frozen_protocol(config, spec, view, info, train, test)}}
    if fitted is not None and isinstance(view, FeatureView) and view.geometry is None:
        path = out_dir / f"{stem}_classifier.pt"
        _save_probe_classifier(encoder, view.pool, size, fitted, path, report)
        report["classifier_file"] = path.name
    write_json(out_dir / f"{stem}.json", report)
    print(format_table(rows))
    print(f"{stem}.json written to {out_dir}")
    return report


def _frozen_protocol(config: Config, spec: dict, view, info: DataInfo, train, test) -> dict:
    return {
        "pooling": view.pooling,
        "layer_dim": view.layer_dim if isinstance(view, LayerView) else None,
        "encoder_mode": "eval, frozen",
        "augmentation": "none",
        "epochs": "features extracted once",
        "label_fraction": config.data.label_fraction,
        "train_limit": config.probe.train_limit,
        "train_split": f"{train.description}, {len(train)} images",
        "test_split": f"{test.description}, {len(test)} images",
        "image_size": info.image_size,
        "patch_grid": view.geometry.__dict__ if getattr(view, "geometry", None) else None,
        "channels": info.channels,
        "encoder_source": str(config.probe.encoder),
        "backbone": spec["backbone"],
        "seed": config.seed,
    }


def _save_probe_classifier(encoder: Encoder, pool: int, size: int, fitted, path: Path, report: dict) -> None:
    model = ImageClassifier(encoder, fitted.weight.shape[0], pool, size)
    weight, bias = fold_standardisation(fitted.weight, fitted.bias, fitted.mean, fitted.std)
    model.head.load_state_dict({"weight": weight, "bias": bias})
    save_classifier(
        model, path, {"kind": "linear probe", "protocol": report["protocol"], "top1": report["results"][0]["top1"]}
    )


def results_dir(source: Path) -> Path:
    run = run_dir_of(source)
    if run is not None:
        return run
    return source if source.is_dir() else source.parent


def format_table(rows: list[dict]) -> str:
    """Rows of encoder, layer, feature size, test top-1 (and train top-1 where there is one)."""
    lines = [f"{'encoder':<12} {'layer':<16} {'dim':>6} {'top-1 test':>10} {'top-1 train':>11}"]
    for r in rows:
        train = f"{r['train_top1']:>11.2f}" if "train_top1" in r else f"{'-':>11}"
        lines.append(f"{r['encoder']:<12} {r['layer']:<16} {r['feature_dim']:>6} {r['top1']:>10.2f} {train}")
    return "\n".join(lines)
