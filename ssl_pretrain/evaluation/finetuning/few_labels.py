"""Fine-tuning with too few labels to validate (a class with a single labeled image): the fixed recipe."""

from __future__ import annotations

import dataclasses

from ...config import FinetuneConfig, listed


def fixed_recipe(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with nothing left to choose: each list's first value (learning rate, steps, augmentation,
    architecture, the semi-supervised method's grid), the last epoch kept, ``auto`` freezing replaced by
    nothing frozen (the auto rule scores probes on validation)."""
    unlabeled = dataclasses.replace(
        cfg.unlabeled, options={k: listed(v)[0] if isinstance(v, list) and k != "tasks" else v
                                for k, v in cfg.unlabeled.options.items()}
    )  # fmt: skip
    first = {
        name: listed(getattr(cfg, name))[0]
        for name in ("lr", "steps", "augment", "model")
        if getattr(cfg, name) is not None
    }
    freeze = None if cfg.freeze_until == "auto" else cfg.freeze_until
    return dataclasses.replace(cfg, **first, keep="last", freeze_until=freeze, unlabeled=unlabeled)
