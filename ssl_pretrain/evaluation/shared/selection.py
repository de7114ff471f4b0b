"""One selection rule for every choice an evaluation makes: choose on validation, test once.

Whatever is chosen (a probe's layer and L2, kNN's k, a fine-tuning epoch or learning rate) is chosen
the same way: each candidate is fitted on the labeled training images minus a validation split (a
stratified share of every class of the *training* labels, fixed by the seed), scored on that split, and
the candidate with the highest validation top-1 wins (ties go to the first in the order given). The
winner is then scored on the test set, once. Test scores of candidates that were not chosen are never
computed unless asked for as diagnostics, and are then labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RULE = "highest validation top-1 (ties: the first candidate in the order given); test scored once, for the choice"


def first_best(scores: list[float]) -> int:
    """Index of the highest score; the first one among equals."""
    if not scores:
        raise ValueError("no candidates to choose from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass
class Selection:
    """What was chosen among ``candidates`` (each a setting with its ``val_top1``), by which validation
    score, and the test top-1 of that choice alone."""

    chosen: dict
    val_top1: float
    test_top1: float | None = None
    candidates: list[dict] = field(default_factory=list)
    validation: str = ""

    @classmethod
    def from_scores(cls, settings: list[dict], val_top1: list[float], validation: str) -> Selection:
        """The first best of ``settings`` by ``val_top1`` (``validation`` describes the split)."""
        best = first_best(val_top1)
        candidates = [{**s, "val_top1": v} for s, v in zip(settings, val_top1, strict=True)]
        return cls(dict(settings[best]), val_top1[best], None, candidates, validation)

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "val_top1": self.val_top1,
            "test_top1": self.test_top1,
            "rule": RULE,
            "validation": self.validation,
            "candidates": self.candidates,
        }
