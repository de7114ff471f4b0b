"""Labeled train/test splits for evaluation."""

from __future__ import annotations

import torch

from ...config import DataConfig
from ...data import open_split
from ...errors import BadInput


def _shuffled_classes(labels: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Each class's indices in an order fixed by ``seed``, classes in sorted order."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        shuffled.append(idx[torch.randperm(len(idx), generator=generator)])
    return shuffled


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(keep, held_out)``: ``fraction`` of every class held out, chosen by ``seed``."""
    keep, held = [], []
    for idx in _shuffled_classes(labels, seed):
        n_held = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``folds`` pairs ``(fit, val)`` of sorted indices for k-fold cross-validation, fixed by ``seed``.

    Every class's images are shuffled, the classes laid end to end and dealt to the folds in turn, so each
    image is in exactly one validation fold, fold sizes differ by at most one and every class is spread
    evenly across them.
    """
    dealt = torch.cat(_shuffled_classes(labels, seed))
    pairs = []
    for fold in range(folds):
        in_fold = torch.zeros(len(labels), dtype=torch.bool)
        in_fold[dealt[fold::folds]] = True
        pairs.append((torch.nonzero(~in_fold).flatten(), torch.nonzero(in_fold).flatten()))
    return pairs


def validation_folds(
    labels: torch.Tensor, val_fraction: float, folds: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(fit, val)`` index pairs a choice is made on: one stratified hold-out of ``val_fraction``
    (``folds=1``, the split :func:`validation_split` draws) or ``folds``-fold cross-validation."""
    if folds == 1:
        return [stratified_split(labels, val_fraction, seed)]
    return stratified_folds(labels, folds, seed)


def label_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of ``fraction`` of every class (at least one image each), chosen by ``seed``.

    Nested: for one seed, the 1% subset lies inside the 10% subset, which lies inside 100%.
    """
    if fraction >= 1:
        return torch.arange(len(labels))
    return stratified_split(labels, fraction, seed)[1]


def validation_split(train, fraction: float, seed: int):
    """``(train, val)``: a stratified ``fraction`` of every class of a labeled set held out, fixed by ``seed``.

    Every evaluation that chooses something (probe, kNN, fine-tuning, ensembles) draws its validation split
    this way, so with the same seed and fraction they hold out the same images.
    """
    keep, held = stratified_split(train.labels, fraction, seed)
    return train.subset(keep), train.subset(held)


def labeled_splits(data: DataConfig, seed: int, train_limit: int | None = None):
    """(train, test) labeled datasets for evaluation; an image folder without ``data.test_root`` holds its
    test files out by path (``data.test_fraction``, the same files whatever the seed; see
    :mod:`ssl_pretrain.data.holdout`).

    ``data.label_fraction`` keeps that stratified share of the training labels (fixed by ``seed``);
    ``train_limit`` (``evaluation.train_limit``) then caps the count.
    """
    train = open_split(data, "train")
    if not train.has_labels:
        raise BadInput(f"data.root: {train.description} has no labels; a probe needs one sub-folder per class")
    test = open_split(data, "test")
    if data.label_fraction < 1:
        train = train.subset(label_subset(train.labels, data.label_fraction, seed))
    if train_limit is not None and train_limit < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        train = train.subset(order[:train_limit].sort().values)
    return train, test


# With a class of a single labeled image nothing can be held out of it: no choice is made on validation then.
TOO_FEW_TO_SPLIT = "a class has a single labeled image, too few to validate"
TOO_FEW = f"none: {TOO_FEW_TO_SPLIT}; the fixed recipe (each list's first value), every label trained on"
NOTHING_TO_CHOOSE = "none: one candidate and the last epoch kept, nothing to choose; every label trained on"


def too_few_to_validate(labels: torch.Tensor) -> bool:
    """Whether some class of ``labels (N,)`` has fewer than two images: a stratified hold-out would take
    that class's only image (or none of it), so evaluations then train on every label, choose nothing and
    use their fixed recipe (docs/evaluation.md#too-few-labels-to-validate)."""
    counts = torch.bincount(labels[labels >= 0])
    present = counts[counts > 0]
    return len(present) == 0 or int(present.min()) < 2
