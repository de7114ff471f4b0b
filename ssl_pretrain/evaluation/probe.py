"""``ssl-pretrain probe``: frozen-encoder linear probe on globally pooled features."""

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
from .encoder_source import load_encoder, run_dir_of
from .feature_view import FeatureView, RawPixels
from .features import extract_features
from .logistic import fit_logistic_regression, top1
from .splits import labeled_splits


def probe_encoder(
    name: str, encoder: FeatureView | RawPixels, train, test, info: DataInfo, config: Config, device: torch.device
) -> dict:
    """Extract features once, fit the logistic regression, return the result row."""
    return evaluate_encoder(name, encoder, train, test, info, config, device, logistic_top1)


def logistic_top1(train_x, train_y, test_x, test_y, num_classes: int, config: Config) -> dict:
    """Fit the probe on ``(N, D)`` training features; test and train top-1 in percent."""
    classifier = fit_logistic_regression(train_x, train_y, num_classes, config.probe.l2, config.probe.max_iter)
    return {
        "top1": round(top1(classifier, test_x, test_y), 2),
        "train_top1": round(top1(classifier, train_x, train_y), 2),
    }


def evaluate_encoder(name: str, encoder, train, test, info: DataInfo, config: Config, device, classify) -> dict:
    """The result row of one frozen encoder: features extracted once, then
    ``classify(train_x, train_y, test_x, test_y, num_classes, config) -> {"top1": ..., ...}``."""
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = frozen_features(encoder, train, test, info, config, device)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    return {
        "encoder": name,
        "layer": encoder.layer,
        "feature_dim": train_x.shape[1],
        **classify(train_x, train_y, test_x, test_y, num_classes, config),
        "seconds": round(time.perf_counter() - start, 1),
    }


def frozen_features(encoder: FeatureView | RawPixels, train, test, info: DataInfo, config: Config, device):
    """``(train_x, train_y, test_x, test_y)`` from the frozen encoder in eval mode, extracted once."""
    encoder = encoder.to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    batch, workers = config.probe.batch_size, config.data.num_workers
    return (
        *extract_features(encoder, train, info, device, batch, workers),
        *extract_features(encoder, test, info, device, batch, workers),
    )


def probe_view(config: Config, spec: dict, encoder: Encoder) -> tuple[int, FeatureView]:
    """Image size and feature view from ``probe.resize``, ``probe.pool``, ``probe.patch_grid``; a
    relative-patch run's own grid (size, patch, gap, per-patch normalisation) is the default grid."""
    task = config.task.options if config.task.name == "relative_patch" else {}
    size = config.probe.resize or (task.get("resize") if config.probe.patch_grid else None) or spec["image_size"]
    if not config.probe.patch_grid:
        return size, FeatureView(encoder, config.probe.pool)
    try:
        geometry = default_geometry(size, task.get("patch"), task.get("gap"), jitter=0)
    except ValueError as err:
        raise ConfigError("probe.patch_grid", f"{err} (set probe.resize)") from None
    return size, FeatureView(encoder, config.probe.pool, geometry, bool(task.get("patch_norm", True)))


def run_probe(config: Config) -> dict:
    """Probe ``probe.encoder`` (and the controls asked for); writes ``probe.json``, prints a table."""
    protocol = {
        "classifier": "multinomial logistic regression, L-BFGS, full batch, standardised features",
        "l2": config.probe.l2,
        "max_iter": config.probe.max_iter,
    }
    return evaluate_frozen(config, "probe", logistic_top1, protocol)


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
    info = DataInfo(spec["in_channels"], size, spec["mean"], spec["std"])
    train, test = labeled_splits(config)
    rows = [evaluate_encoder("pretrained", view, train, test, info, config, device, classify)]
    if config.probe.control in ("random_init", "all"):
        torch.manual_seed(config.seed)
        control = FeatureView(encoder_from_spec(spec), view.pool, view.geometry, view.patch_norm)
        rows.append(evaluate_encoder("random_init", control, train, test, info, config, device, classify))
    if config.probe.control in ("raw_pixels", "all"):
        rows.append(evaluate_encoder("raw_pixels", RawPixels(), train, test, info, config, device, classify))
    report = {
        "results": rows,
        "protocol": {
            **protocol,
            "pooling": view.pooling,
            "encoder_mode": "eval, frozen",
            "augmentation": "none",
            "train_limit": config.probe.train_limit,
            "train_split": f"{train.description}, {len(train)} images",
            "test_split": f"{test.description}, {len(test)} images",
            "image_size": info.image_size,
            "patch_grid": view.geometry.__dict__ if view.geometry else None,
            "channels": info.channels,
            "encoder_source": str(config.probe.encoder),
            "backbone": spec["backbone"],
            "seed": config.seed,
        },
    }
    out_dir = _output_dir(Path(config.probe.encoder))
    write_json(out_dir / f"{command}.json", report)
    print(format_table(rows))
    print(f"{command}.json written to {out_dir}")
    return report


def _output_dir(source: Path) -> Path:
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
