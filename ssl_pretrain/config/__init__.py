"""Run configuration: YAML defaults, dotted command-line overrides, validated dataclasses.

Flow: ``load_config(path, overrides)`` reads YAML with ``yaml.safe_load``, applies ``key=value``
overrides (values parsed as YAML), then validates every key. ``Config.to_dict()`` is the resolved
config, every default filled in, as written to ``config.yaml`` in the run directory.
The options of ``model`` and ``task`` come from the signatures of the registered factories. The sections and
their keys are :mod:`.sections`; renamed keys, still read, are :mod:`.migrations`.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import BadInput, ConfigError, OptionError
from ..options import resolve_options
from ..typecheck import check_value
from .migrations import (
    DEPRECATED_KEYS,
    FLAT_UNLABELED_KEYS,
    NAMED_SECTIONS,
    current_key,
    move_deprecated,
    note_renamed,
    unlabeled_section,
)
from .sections import (
    _FIXED_SECTIONS,
    Augment,
    Config,
    DataConfig,
    EmbedConfig,
    EnsembleConfig,
    EvaluationConfig,
    ExportConfig,
    FinetuneConfig,
    GaugesConfig,
    GradcamConfig,
    KnnConfig,
    ModelConfig,
    NeighboursConfig,
    OnlineEvalConfig,
    ProbeConfig,
    TaskConfig,
    TrainerConfig,
    UnlabeledConfig,
    _TopLevel,
    listed,
)

__all__ = [
    "DEPRECATED_KEYS", "FLAT_UNLABELED_KEYS", "NAMED_SECTIONS", "Augment", "Config", "DataConfig", "EmbedConfig",
    "EnsembleConfig", "EvaluationConfig", "ExportConfig", "FinetuneConfig", "GaugesConfig", "GradcamConfig",
    "KnnConfig", "ModelConfig", "NeighboursConfig", "OnlineEvalConfig", "ProbeConfig", "TaskConfig",
    "TrainerConfig", "UnlabeledConfig", "apply_overrides", "build_config", "current_key", "listed", "load_config",
    "merged", "model_label", "read_yaml", "save_config",
]  # fmt: skip


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with ``safe_load``; a missing or malformed file is bad input."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BadInput(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set each ``dotted.key=value`` (value parsed as YAML) in a copy of ``raw``; a renamed key sets its new
    name (so it overrides a config file's value as any override does)."""
    raw = yaml.safe_load(yaml.safe_dump(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise BadInput(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            raise ConfigError(key, f"value {text!r} is not valid YAML") from None
        if key in DEPRECATED_KEYS:
            note_renamed(key, value)
            key = current_key(key)
        node = raw
        parts = key.split(".")
        if key in NAMED_SECTIONS and isinstance(value, str) and isinstance(_lookup(raw, parts), dict):
            value = {**_lookup(raw, parts), NAMED_SECTIONS[key]: value}  # the method, its options kept
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            name_key = NAMED_SECTIONS.get(".".join(parts[: i + 1]))
            if isinstance(child, str) and name_key:  # finetune.unlabeled=fixmatch, then one of its options
                child = node[part] = {name_key: child}
            if not isinstance(child, dict):
                raise ConfigError(key, f"{part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def _lookup(raw: dict, parts: list[str]) -> Any:
    """The value at ``parts`` in nested ``raw``, None where a level is missing."""
    for part in parts:
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _build_section(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix, f"must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{prefix}{key}", f"unknown key; accepted keys here: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        key = f"{prefix}{name}"
        value = check_value(raw[name], hints[name], key)
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(key, f"must be {f.metadata['accepted']}, got {value!r}")
        values[name] = value
    return cls(**values)


def _build_registered(raw: Any, section: str, name_key: str, default: str, registry: dict) -> tuple[str, dict]:
    """``(name, options)`` of a registry-backed section (``model``: backbone, ``task``: name)."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(section, f"must be a mapping of keys, got {raw!r}")
    raw = dict(raw or {})
    key = f"{section}.{name_key}"
    name = check_value(raw.pop(name_key, default), str, key)
    if name not in registry:
        raise ConfigError(key, f"unknown {name_key} {name!r}; accepted: {', '.join(registry)}")
    options = resolve_options(registry[name], raw, section)
    complete = getattr(registry[name], "complete_options", None)
    if complete is None:
        return name, options
    try:
        return name, complete(options)
    except OptionError as err:
        raise ConfigError(f"{section}.{err.option}", str(err).split(": ", 1)[1]) from None


def build_config(raw: dict) -> Config:
    """Validate a raw nested mapping into a :class:`Config`; raises ConfigError naming the bad key."""
    raw = move_deprecated(dict(raw))
    raw["finetune"], unlabeled = unlabeled_section(raw.get("finetune"))
    sections = {name: _build_section(cls, raw.pop(name, None), f"{name}.") for name, cls in _FIXED_SECTIONS.items()}
    from ..registry import DATASETS, ENCODERS, TASKS

    if sections["data"].name not in DATASETS:
        raise ConfigError("data.name", f"unknown dataset {sections['data'].name!r}; accepted: {', '.join(DATASETS)}")
    model = ModelConfig(*_build_registered(raw.pop("model", None), "model", "backbone", "small_resnet", ENCODERS))
    task = TaskConfig(*_build_registered(raw.pop("task", None), "task", "name", "dae", TASKS))
    from ..registry import UNLABELED_METHODS

    method, options = _build_registered(unlabeled, "finetune.unlabeled", "method", "none", UNLABELED_METHODS)
    sections["finetune"].unlabeled = UnlabeledConfig(method, options)
    _check_scratch_models(sections["finetune"], ENCODERS)
    top = _build_section(_TopLevel, raw, "")
    config = Config(**dataclasses.asdict(top), model=model, task=task, **sections)
    if config.run_name is None:
        config.run_name = f"{config.data.name}-{config.task.name}"
    _check_device(config.device)
    return config


def _check_scratch_models(finetune: FinetuneConfig, encoders: dict) -> None:
    """``finetune.model``: training from scratch only, each entry a registered backbone with its own options,
    no entry twice."""
    if finetune.model is None:
        return
    if finetune.init != "random":
        raise ConfigError("finetune.model", "sets the architecture trained from scratch; it needs finetune.init=random")
    if not listed(finetune.model):
        raise ConfigError("finetune.model", "must be a mapping with a backbone, or a non-empty list of them")
    labels = []
    for entry in listed(finetune.model):
        if "backbone" not in entry:
            raise ConfigError("finetune.model.backbone", f"is required in each entry, got {entry!r}")
        _build_registered(entry, "finetune.model", "backbone", "", encoders)
        labels.append(model_label(entry))
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError("finetune.model", f"lists {twice[0]} more than once")


def model_label(entry: dict) -> str:
    """A short name of a ``{backbone, <options>}`` mapping, its options in name order (the same after a
    YAML round trip): ``vgg11_bn-small_input=true``, ``small_resnet-blocks=1x1-widths=64x128``."""

    def text(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "x".join(text(v) for v in value)
        return str(value).lower() if isinstance(value, bool) else str(value)

    options = [f"{key}={text(value)}" for key, value in sorted(entry.items()) if key != "backbone"]
    return "-".join([str(entry["backbone"]), *options])


def _check_device(device: str) -> None:
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise ConfigError("device", f"must be auto, cpu, cuda or cuda:N, got {device!r}")


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Read ``path`` (or start from ``base``), apply overrides and validate."""
    raw = dict(base or {})
    if path is not None:
        raw = merged(raw, read_yaml(path))
    return build_config(apply_overrides(raw, list(overrides)))


def merged(base: dict, update: dict) -> dict:
    """``update`` laid over ``base``, section by section."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
