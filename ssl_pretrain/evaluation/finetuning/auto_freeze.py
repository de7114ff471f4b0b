"""``finetune.freeze_until=auto``: pick the freeze point from a multi-layer probe and the label count.

Two questions decide it (the four classic transfer-learning situations):

- *Is the labeled set small?* Fewer than ``small_per_class`` training labels per class: then training
  many pretrained layers overfits, so freeze as much as the features allow.
- *Is the downstream task similar to what pretraining learned?* Read from the multi-layer probe on
  the labeled data: if the last stage (or its pooled output) probes within ``tolerance`` points of the
  best layer, the top of the encoder already fits the task (similar); if an earlier stage probes
  clearly better, the last stages are specialised to the pretext task (different).

| labels | similar | different |
| --- | --- | --- |
| small | head only (``all``) | freeze up to the best-probing stage, retrain the stages after it |
| large | full fine-tuning, pretrained layers at the lower learning rate | full fine-tuning |
"""

from __future__ import annotations

from ..features.layer_view import POOLED


def choose_freeze_point(
    layer_top1: dict[str, float],
    stage_names: list[str],
    labels_per_class: float,
    small_per_class: int,
    tolerance: float = 1.0,
) -> tuple[str | None, str]:
    """``(freeze_until, reason)`` from ``{layer: probe top-1}`` (stages in order, ``pooled`` last)."""
    best = max(layer_top1, key=layer_top1.get)
    top = max(layer_top1.get(stage_names[-1], float("-inf")), layer_top1.get(POOLED, float("-inf")))
    similar = top >= layer_top1[best] - tolerance
    small = labels_per_class < small_per_class
    size = f"{labels_per_class:.0f} labels per class ({'<' if small else '>='} {small_per_class}: " + (
        "small)" if small else "large)"
    )
    if similar:
        fit = (
            f"the last stage probes at {top:.2f}%, within {tolerance} points of the best layer "
            f"({best}, {layer_top1[best]:.2f}%): similar task"
        )
    else:
        fit = (
            f"{best} probes at {layer_top1[best]:.2f}%, more than {tolerance} points over the last stage "
            f"({top:.2f}%): the last stages are specialised to the pretext task (different)"
        )
    if small and similar:
        return "all", f"{size}; {fit} -> train the head only"
    if small:  # not similar, so the best layer is a stage before the last
        return best, f"{size}; {fit} -> freeze up to {best}, retrain the stages after it"
    return None, f"{size}; {fit} -> fine-tune everything (pretrained layers at the lower learning rate)"
