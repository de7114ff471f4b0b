"""The cells of ``label_budget.py``: a labeled set (drawn, or chosen by ``ssl.select``), written as the
``data.labels`` file a person would hand back, evaluated through the public API."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import run_config
from low_label_cells import FINETUNE_RECIPE, FINETUNE_STEPS, HEAD, SEMI_AUGMENT, SEMI_RECIPES, finetune_report
from torch import nn

import ssl_pretrain as ssl
from ssl_pretrain.encoders import ENCODERS, TrunkParts, build_encoder
from ssl_pretrain.encoders.export import export_encoder

PROBE = ["probe.l2=[1e-4,1e-3,1e-2]", "trainer.progress=false"]  # first value: the fixed recipe (too few labels)
KNN = ["knn.k=[5,10,20,50]", "trainer.progress=false"]
# FixMatch: low_label.py's recipe at 1% of the labels (the 600 labels its 83.72% and 85.72% were measured at),
# the last epoch kept: 1800 steps, AdamW at 0.003, two unlabeled images per labeled one, pseudo-labels above
# 0.95, crop + flip on the labeled images; each start's own head (HEAD).
FIXMATCH = [f"finetune.steps={FINETUNE_STEPS[0.01]}", *FINETUNE_RECIPE, *SEMI_RECIPES["fixmatch"], SEMI_AUGMENT]
# One candidate and the last epoch kept: nothing is chosen, so every label trains (no validation split).
FIXMATCH += ["finetune.keep=last", "finetune.validation=auto", "trainer.progress=false"]


@dataclass
class Cell:
    """One labeled set and what it gave: test top-1 of the frozen probe and of kNN (and FixMatch, where run: a
    list, one per training seed), the classes it covers, the seconds its choice took; ``candidates``: with too
    few labels to validate and ``diagnostics``, ``{"probe"|"knn": {setting: test top-1}}`` of every setting."""

    positions: list[int]
    classes: int
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)
    candidates: dict = field(default_factory=dict)


def drawn(labels: torch.Tensor, budget: int, seed: int, balanced: bool) -> list[int]:
    """``budget`` training positions drawn at random by ``seed``; ``balanced``: as equal a share of every class
    as there is (needs the labels: what today's ``data.label_fraction`` does, a baseline a user does not have)."""
    generator = torch.Generator().manual_seed(seed)
    if not balanced:
        return torch.randperm(len(labels), generator=generator)[:budget].sort().values.tolist()
    classes = labels.unique(sorted=True).tolist()
    picks = []
    for i, cls in enumerate(classes):
        members = (labels == cls).nonzero().flatten()
        share = budget // len(classes) + (1 if i < budget % len(classes) else 0)
        picks += members[torch.randperm(len(members), generator=generator)[:share]].tolist()
    return sorted(picks)


def chosen(embeddings: Path, budget: int, strategy: str, seed: int) -> tuple[list[int], float, dict]:
    """``(positions, seconds, details)`` that ``ssl.select`` chose from an embeddings folder."""
    out = embeddings / f"selection-{strategy}-{budget}-s{seed}"
    summary = ssl.select(embeddings, {"select.budget": budget, "select.strategy": strategy, "seed": seed,
                                      "select.output": str(out), "trainer.progress": False})  # fmt: skip
    return [int(key) for key in summary.keys], summary.seconds, summary.details


def evaluate(run: Path, cell: Cell, work: Path, name: str, seed: int, extra: list[str], diagnostics: bool) -> None:
    """The frozen probe and kNN of ``run``'s encoder trained on the cell's labels (the true labels of its
    positions: ``index``-only rows), tested on the test set; with ``diagnostics`` (a development split's test
    images only) every setting's test top-1 where there were too few labels to choose one on validation."""
    labels = work / "labels" / f"{name}.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("index\n" + "".join(f"{p}\n" for p in cell.positions))
    given = [f"data.labels={labels}", f"seed={seed}", *extra, *(["probe.test_diagnostics=true"] if diagnostics else [])]
    for key, grid in (("probe", PROBE), ("knn", KNN)):
        report = getattr(ssl, key)(run, [*grid, *given])
        cell.scores[key] = report.test_top1()
        if diagnostics and "pretrained" not in report.selected:
            (setting,) = report.setting_keys
            rows = [r for r in report.results if r["encoder"] == "pretrained"]
            cell.candidates[key] = {f"{r[setting]:g}": r.get("top1", r.get("diagnostic_test_top1")) for r in rows}


def fixmatch(run: Path, cell: Cell, work: Path, name: str, seed: int, init: str, extra: list[str]) -> None:
    """FixMatch from ``run``'s encoder (``init=pretrained``) or from random initialisation on the cell's labels,
    training seed ``seed``; a finished run of the same config is read instead of trained again."""
    labels = work / "labels" / f"{name}.csv"
    prefix = f"budget-{name}-{init}-t{seed}"
    given = [f"data.labels={labels}", f"seed={seed}", f"finetune.init={init}", *HEAD[init]]
    config = run_config(run, [*FIXMATCH, *given, *extra, f"finetune.name={prefix}-{int(time.time() * 1000)}"])
    report, reused = finetune_report(run, prefix, config)
    cell.scores.setdefault(f"fixmatch_{init}", []).append(report["test_top1"])
    print(f"  FixMatch {init} {name} seed {seed}: {report['test_top1']}{' (reused)' if reused else ''}", flush=True)


def pretraining_embeddings(source, run: Path, folder: Path, extra: list[str]) -> Path:
    """``folder``: ``source``'s embeddings (an encoder, run or exported) of the pretraining split of ``run``'s
    config with ``extra`` (the training images, ``data.limit`` and ``data.development`` applied, so a row is
    always a training position); reused when complete."""
    record = folder / "embed.json"
    if not record.is_file() or not json.loads(record.read_text()).get("complete"):
        overrides = ["embed.split=pretrain", f"embed.output={folder}", "embed.projector_images=0", *extra]
        ssl.embed(source, [*overrides, "trainer.progress=false"], config=ssl.load_config(run / "config.yaml", extra))
    return folder


def values(cells: list[Cell], key: str) -> list[float]:
    """Every score ``key`` of ``cells`` (FixMatch's lists flattened)."""
    found = [c.scores[key] for c in cells if key in c.scores]
    return [v for f in found for v in (f if isinstance(f, list) else [f])]


def raw_pixels(in_channels: int, *, size: int = 28) -> TrunkParts:
    """A backbone whose features are the image's pixels, flattened: the selection's control."""
    width = in_channels * size * size
    flat = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (width, 1, 1)))  # a (B, D, 1, 1) map: pooled, the pixels
    return TrunkParts(flat, [("pixels", [flat])], [], width)


def raw_pixels_encoder(folder: Path, channels: int, size: int) -> Path:
    """``raw_pixels`` registered and exported (``encoder.pt`` + ``encoder.yaml``) for ``ssl.embed``."""
    if "raw_pixels" not in ENCODERS:
        ssl.register_encoder("raw_pixels", raw_pixels)
    encoder = build_encoder("raw_pixels", {"size": size}, channels, size, [0.5] * channels, [0.25] * channels)
    return export_encoder(encoder, folder)


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}" if len(values) > 1 else f"{values[0]:.2f}"
