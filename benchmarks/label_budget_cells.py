"""The cells of ``label_budget.py``: a labeled set (drawn, or chosen by ``ssl.select``), written as the
``data.labels`` file a person would hand back, evaluated through the public API."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import ssl_pretrain as ssl
from ssl_pretrain.encoders import ENCODERS, TrunkParts, build_encoder
from ssl_pretrain.encoders.export import export_encoder

PROBE = ["probe.l2=[1e-4,1e-3,1e-2]", "trainer.progress=false"]  # first value: the fixed recipe (too few labels)
KNN = ["knn.k=[5,10,20,50]", "trainer.progress=false"]


@dataclass
class Cell:
    """One labeled set and what it gave: test top-1 of the frozen probe and of kNN (and FixMatch, where run),
    the classes it covers, the seconds its choice took."""

    positions: list[int]
    classes: int
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)


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


def evaluate(run: Path, cell: Cell, work: Path, name: str, seed: int, extra: list[str]) -> None:
    """The frozen probe and kNN of ``run``'s encoder trained on the cell's labels (the true labels of its
    positions: ``index``-only rows), tested on the test set."""
    labels = work / "labels" / f"{name}.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("index\n" + "".join(f"{p}\n" for p in cell.positions))
    given = [f"data.labels={labels}", f"seed={seed}", *extra]
    cell.scores["probe"] = ssl.probe(run, [*PROBE, *given]).test_top1()
    cell.scores["knn"] = ssl.knn(run, [*KNN, *given]).test_top1()


def fixmatch(run: Path, cell: Cell, work: Path, name: str, seed: int, init: str, overrides: list[str]) -> None:
    """FixMatch from ``run``'s encoder (``init=pretrained``) or from random initialisation on the cell's labels."""
    labels = work / "labels" / f"{name}.csv"
    given = [f"data.labels={labels}", f"seed={seed}", f"finetune.init={init}", f"finetune.name=budget-{name}-{init}"]
    report = ssl.finetune(run, [*overrides, *given, "finetune.unlabeled=fixmatch", "trainer.progress=false"])
    cell.scores[f"fixmatch_{init}"] = report.test_top1


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
