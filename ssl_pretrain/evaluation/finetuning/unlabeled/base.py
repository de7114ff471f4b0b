"""The seam for learning from unlabeled images while fine-tuning: :class:`UnlabeledMethod`.

A method is a class registered under a name (``finetune.unlabeled.method``); its keyword-only constructor
parameters are its options (``finetune.unlabeled.<option>``, type-checked and defaulted from the signature,
as a pretext task's are). Options named in ``grid`` may be lists: each value is a candidate, chosen on
validation like ``finetune.lr``. For each candidate the loop asks the method for an :class:`Objective`:
the loss of one step from a labeled batch and (when ``uses_pool``) a batch of ``ratio x batch_size``
unlabeled images. ``none`` (labels only), ``fixmatch`` and ``pretext`` (S4L) are the built-in methods;
adding one is one subclass and one :func:`~ssl_pretrain.registry.register_unlabeled_method` call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ....config import listed
from ....data import EpochBatchSampler, make_loader
from ....errors import check_option


class Objective:
    """One candidate's training loss. ``views`` runs outside autocast (augmentation of the unlabeled
    batch ``(U, C, S, S)`` floats on the device), ``loss`` inside it; ``parameters`` are trainable
    parameters the method adds besides the classifier's (heads of its own)."""

    parameters: list[nn.Parameter] = []
    study_threshold: float = 0.95  # the confidence a pseudo-label needs in the study-only check

    def views(self, pool: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return ()

    def loss(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, views: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, detached statistics)`` of labeled ``images (B, C, S, S)``, ``labels (B,)``, ``views``."""
        return F.cross_entropy(model(images), labels), {}


class UnlabeledMethod:
    """Base class: fine-tuning on the labeled images only (``none``). Subclasses set ``uses_pool``,
    ``grid``, ``description``, and override :meth:`objective` (and :meth:`check` to refuse a bad set-up
    before anything is written)."""

    uses_pool = False
    grid: tuple[str, ...] = ()
    description = "none: the labeled images only"

    def __init__(self, **options):
        self.options = options

    @classmethod
    def complete_options(cls, options: dict) -> dict:
        """The options as ``config.yaml`` records them; raises ``OptionError`` for a value out of range."""
        return options

    def check(self, encoder: nn.Module, pool_size: int, seed: int) -> None:
        """Refuse (``ConfigError``) a method that cannot train on this encoder or pool."""

    def objective(self, model: nn.Module, setting: dict, seed: int, device: torch.device) -> Objective:
        """The loss of one candidate, ``setting``: the chosen values of the ``grid`` options."""
        return Objective()

    def record(self, setting: dict, pool_text: str) -> dict | None:
        """What the candidate does, for ``finetune.json``'s protocol (None: labels only)."""
        return None

    def unlabeled_batch(self, setting: dict, batch_size: int) -> int:
        """Unlabeled images a step of candidate ``setting`` reads beside ``batch_size`` labeled ones (0: none)."""
        return 0


LabelsOnly = UnlabeledMethod


class PoolMethod(UnlabeledMethod):
    """A method that reads ``ratio x batch_size`` unlabeled images a step and weighs its own loss by
    ``weight``; both checked here."""

    uses_pool = True
    grid = ("ratio",)

    def __init__(self, *, ratio: float | list[float] = 3.0, weight: float = 1.0, **options):
        super().__init__(ratio=ratio, weight=weight, **options)

    @classmethod
    def complete_options(cls, options: dict) -> dict:
        ratios = listed(options["ratio"])
        check_option(bool(ratios) and all(r > 0 for r in ratios), "ratio", "must be > 0, or a non-empty list of them")
        check_option(options["weight"] >= 0, "weight", "must be >= 0")
        return options

    def unlabeled_batch(self, setting: dict, batch_size: int) -> int:
        return max(1, round(setting["ratio"] * batch_size))

    def record(self, setting: dict, pool_text: str) -> dict:
        return {
            "method": self.description,
            "ratio": setting["ratio"],
            "weight": self.options["weight"],
            "unlabeled_pool": pool_text,
        }


@dataclass
class Unlabeled:
    """The unlabeled images of a semi-supervised candidate: the pool (labels removed) and, for studies only,
    a labeled copy of part of it that pseudo-labels are checked against outside the training step."""

    pool: object
    study: object | None = None


def unlabeled_pool(train_split, val):
    """The training split's images outside the validation split, with every label removed."""
    keep = ~torch.isin(train_split.origin, val.origin)
    return train_split.subset(keep.nonzero().flatten()).without_labels()


def unlabeled_batches(pool, batch_size: int, seed: int, num_workers: int, pin_memory: bool) -> Iterator:
    """uint8 batches of ``pool`` without end, reshuffled every pass (order a function of the seed)."""
    sampler = EpochBatchSampler(len(pool), batch_size, seed)
    loader = make_loader(pool, sampler, num_workers, pin_memory)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            if len(batch.images):
                yield batch
        epoch += 1
