"""Learning from the unlabeled images while fine-tuning: one class per method (see :mod:`.base`)."""

from .base import Objective, PoolMethod, Unlabeled, UnlabeledMethod, unlabeled_batches, unlabeled_pool

__all__ = ["Objective", "PoolMethod", "Unlabeled", "UnlabeledMethod", "unlabeled_batches", "unlabeled_pool"]
