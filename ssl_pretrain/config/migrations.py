"""Keys that were renamed or moved, read as their new names: an old key still works, with a one-line notice
when its value differs from the default (older runs' ``config.yaml`` lists every key with its default)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from ..errors import ConfigError
from ..options import option_signature
from .sections import _FIXED_SECTIONS

# Old key -> new key. An old key still works: a value other than the default is read as the new key's,
# with a one-line notice (old keys filled in with their defaults, as in the config.yaml of older runs, are
# dropped without one). Notice-free: probe.encoder, the name the command-line contract fixes.
DEPRECATED_KEYS = {
    "probe.test_fraction": "data.test_fraction",
    "online.test_images": "online.val_images",
    "probe.encoder": "evaluation.encoder",
    "probe.control": "evaluation.control",
    "probe.batch_size": "evaluation.batch_size",
    "probe.train_limit": "evaluation.train_limit",
    "probe.val_fraction": "evaluation.val_fraction",
}
_SILENT_ALIASES = {"probe.encoder"}
# Keys no longer read -> (their old default, why). Older runs' config.yaml lists them: dropped there, with a
# one-line notice when the value was not the default.
REMOVED_KEYS = {"select.ball_neighbours": (64, "ProbCover's balls are exact now")}


def current_key(key: str) -> str:
    """The name ``key`` has now (itself, unless it is a renamed key)."""
    return DEPRECATED_KEYS.get(key, key)


def _default(key: str) -> Any:
    section, name = key.split(".")
    return next(f.default for f in dataclasses.fields(_FIXED_SECTIONS[section]) if f.name == name)


def note_renamed(old: str, value: Any) -> None:
    if old not in _SILENT_ALIASES:
        new = DEPRECATED_KEYS[old]
        print(f"ssl-pretrain: note: {old} is deprecated, use {new} (read as {new}={value})", file=sys.stderr)


def move_deprecated(raw: dict) -> dict:
    """Old keys inside a config file or mapping read as their new names (see :data:`DEPRECATED_KEYS`), keys
    no longer read dropped (:data:`REMOVED_KEYS`)."""
    for key, (default, why) in REMOVED_KEYS.items():
        section, name = key.split(".")
        if isinstance(raw.get(section), dict) and name in raw[section]:
            raw[section] = dict(raw[section])
            if raw[section].pop(name) != default:
                print(f"ssl-pretrain: note: {key} is no longer used ({why}); ignored", file=sys.stderr)
    for old, new in DEPRECATED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section = raw.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        section = dict(section)
        value = section.pop(old_key)
        raw[old_section] = section
        default = _default(new)
        if value == default:
            continue
        target = dict(raw.get(new_section) or {})
        if target.get(new_key, default) not in (default, value):
            raise ConfigError(old, f"{old}={value!r} and {new}={target[new_key]!r} disagree; give {new} alone")
        target[new_key] = value
        raw[new_section] = target
        note_renamed(old, value)
    return raw


# Sections a bare name may stand for: ``finetune.unlabeled=fixmatch`` is ``{method: fixmatch}``.
NAMED_SECTIONS = {"finetune.unlabeled": "method"}
# The semi-supervised options before they had their own section: finetune.<old> -> finetune.unlabeled.<new>.
FLAT_UNLABELED_KEYS = {
    "unlabeled_ratio": "ratio",
    "threshold": "threshold",
    "unlabeled_weight": "weight",
    "pretext": "tasks",
}


def unlabeled_section(finetune: Any) -> tuple[Any, Any]:
    """``(finetune section without unlabeled, the finetune.unlabeled mapping)``: a bare method name becomes
    ``{method: name}``; the flat keys of older versions (``finetune.threshold``) move in with a notice when
    the method takes them and they differ from its default, and are dropped otherwise (older runs'
    config.yaml lists them all)."""
    if not isinstance(finetune, dict):
        return finetune, None
    finetune = dict(finetune)
    unlabeled = finetune.pop("unlabeled", None)
    if isinstance(unlabeled, str):
        unlabeled = {"method": unlabeled}
    old = {key: finetune.pop(key) for key in FLAT_UNLABELED_KEYS if key in finetune}
    if not old or not isinstance(unlabeled, dict):
        return finetune, unlabeled
    from ..registry import UNLABELED_METHODS

    unlabeled = dict(unlabeled)
    method = UNLABELED_METHODS.get(unlabeled.get("method", "none"))
    accepted = option_signature(method) if method is not None else {}
    for key, value in old.items():
        new = FLAT_UNLABELED_KEYS[key]
        if new not in accepted or value == accepted[new][1]:
            continue
        if unlabeled.get(new, value) != value:
            message = f"finetune.unlabeled.{new}={unlabeled[new]!r} disagree; give the second alone"
            raise ConfigError(f"finetune.{key}", f"finetune.{key}={value!r} and {message}")
        unlabeled[new] = value
        print(f"ssl-pretrain: note: finetune.{key} is deprecated, use finetune.unlabeled.{new}", file=sys.stderr)
    return finetune, unlabeled
