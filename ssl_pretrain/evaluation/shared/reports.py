"""What the evaluation entry points return: typed result objects, one per command, that print nothing.

Each is a dataclass whose fields are what its JSON file holds (``to_dict()`` is that record), and each also
reads as that record (``report["selected"]``, ``dict(report)``), so a script written against the JSON files
works on the objects unchanged. Formatting for the terminal lives with each command (``format_*``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class Report(Mapping):
    """Base of the result objects: the fields as a read-only mapping, and the JSON record."""

    def to_dict(self) -> dict[str, Any]:
        """The record written to the command's JSON file (plain, JSON-able values)."""
        return {name: getattr(self, name) for name in self._names()}

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]


@dataclass(eq=False)
class FrozenReport(Report):
    """A linear probe's or kNN's figures (``probe.json``, ``knn.json``).

    ``results``: one row per encoder (pretrained and the controls), layer and setting, with its top-1;
    ``selected``: per encoder, the setting validation chose, its validation and test top-1;
    ``protocol``: how the figures were made (splits, features, precision, whether pretraining saw the test
    images); ``setting_keys``: the setting columns of the rows (``l2`` or ``k``); ``classifier_file``: the
    saved linear classifier, for a probe of one layer.
    """

    results: list[dict]
    selected: dict[str, dict]
    protocol: dict
    report_file: str
    setting_keys: list[str]
    classifier_file: str | None = None

    def chosen_rows(self) -> dict[str, dict]:
        """``{encoder: its chosen row}`` (the one candidate, or the one validation chose)."""
        return {row["encoder"]: row for row in self.results if row["chosen"]}

    def test_top1(self, encoder: str = "pretrained") -> float:
        """Test top-1 of ``encoder``'s chosen row."""
        return self.chosen_rows()[encoder]["top1"]


@dataclass(eq=False)
class FinetuneReport(Report):
    """A fine-tuning run's figures (``finetune.json``): the test top-1 of the epoch and candidate chosen on
    validation, that validation score, the chosen epoch and the validation curve, the diagnostic last-epoch
    test top-1 (not used for any choice), CPU seconds over all candidates, and the protocol."""

    test_top1: float
    val_top1: float
    best_epoch: int
    val_top1_per_epoch: list[float]
    selected: dict
    diagnostics: dict
    train_seconds: float
    protocol: dict
    report_file: str


@dataclass(eq=False)
class EnsembleReport(Report):
    """An ensemble's test top-1 and validation top-1 (for ``stacking``, on the images its head was fitted
    on), each member's validation and test top-1, and how it combined them."""

    ensemble_top1: float
    members: list[dict]
    protocol: dict
    report_file: str
    ensemble_val_top1: float | None = None


@dataclass(eq=False)
class GradcamReport(Report):
    """Where the Grad-CAM grid was written, the layer, and per image the class explained and the true one."""

    png: str
    layer: str
    which: str
    split: str
    classes: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
