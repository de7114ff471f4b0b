"""Run configuration: YAML defaults, dotted command-line overrides, validated dataclasses.

Flow: ``load_config(path, overrides)`` reads YAML with ``yaml.safe_load``, applies ``key=value``
overrides (values parsed as YAML), then validates every key. ``Config.to_dict()`` is the resolved
config, every default filled in, as written to ``config.yaml`` in the run directory.
The options of ``model`` and ``task`` come from the signatures of the registered factories.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import BadInput, ConfigError, OptionError
from .options import option_signature, resolve_options
from .typecheck import check_value


def _ranged(default: Any, check: Callable[[Any], bool], accepted: str) -> Any:
    return field(default=default, metadata={"check": check, "accepted": accepted})


def _positive(default: Any) -> Any:
    return _ranged(default, lambda v: v is None or v > 0, "> 0")


def _non_negative(default: Any) -> Any:
    return _ranged(default, lambda v: v is None or v >= 0, ">= 0")


def listed(value: Any) -> list:
    """A value that may be one candidate or a list of candidates, as a list."""
    return list(value) if isinstance(value, list) else [value]


def _numbers(value: Any) -> bool:
    return not isinstance(value, list) or len(value) > 0


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: str | list[str] | None = None
    test_root: str | list[str] | None = None
    limit: int | None = _positive(None)
    image_size: int | None = _ranged(None, lambda v: v is None or v >= 8, ">= 8 (null = the dataset's own)")
    channels: int | None = _ranged(None, lambda v: v in (None, 1, 3), "1, 3 or null")
    num_workers: int | Literal["auto"] = _ranged("auto", lambda v: v == "auto" or v >= 0, ">= 0 or auto")
    decode: Literal["auto", "cpu", "gpu"] = "auto"
    download: bool = True
    label_fraction: float = _ranged(1.0, lambda v: 0 < v <= 1, "in (0, 1] (share of training labels, stratified)")
    test_fraction: float = _ranged(0.2, lambda v: 0 < v < 1, "in (0, 1) (image_folder without test_root)")
    pretrain_on_test: bool = False
    development: int | None = _positive(None)


@dataclass
class TrainerConfig:
    batch_size: int = _positive(128)
    epochs: int = _positive(1)
    max_steps: int | None = _positive(None)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = _positive(1e-3)
    weight_decay: float = _non_negative(1e-4)
    momentum: float = _ranged(0.9, lambda v: 0 <= v < 1, "in [0, 1)")
    warmup_steps: int = _non_negative(100)
    min_lr_ratio: float = _ranged(0.0, lambda v: 0 <= v <= 1, "in [0, 1]")
    checkpoint_every: int = _positive(500)
    keep_last: int = _non_negative(0)
    log_every: int = _positive(20)
    image_every: int = _positive(200)
    resume: bool = False
    progress: bool = True
    nonfinite: Literal["stop", "skip"] = "stop"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool | None = None
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    sync_batchnorm: bool = False
    cudnn_benchmark: bool = True
    tf32: bool = True
    dist_timeout: float = _positive(600.0)
    sync_debug: Literal["off", "count", "error"] = "off"


@dataclass
class EvaluationConfig:
    """Settings every evaluation of an encoder shares (probe, kNN, fine-tuning, online evaluation)."""

    encoder: str | None = None
    control: Literal["none", "random_init", "raw_pixels", "all"] = "none"
    batch_size: int = _positive(512)
    train_limit: int | None = _positive(None)
    val_fraction: float = _ranged(0.1, lambda v: 0 < v < 1, "in (0, 1)")
    val_folds: int = _ranged(1, lambda v: v >= 1, ">= 1 (1: one hold-out of val_fraction)")


@dataclass
class ProbeConfig:
    max_iter: int = _positive(200)
    l2: float | list[float] = _ranged(
        1e-4, lambda v: _numbers(v) and all(x >= 0 for x in listed(v)), ">= 0, or a non-empty list of them"
    )
    test_diagnostics: bool = False
    resize: int | None = _ranged(None, lambda v: v is None or v >= 8, ">= 8 px or null (the encoder's input size)")
    patch_grid: bool = False
    pool: int = _ranged(1, lambda v: 1 <= v <= 8, "in 1..8 (1: global average pooling)")
    layers: str | list[str] | None = None
    layer_dim: int = _ranged(9216, lambda v: v >= 1, ">= 1 (values per layer after pooling)")


@dataclass
class KnnConfig:
    k: int | list[int] = _ranged(20, lambda v: _numbers(v) and all(x > 0 for x in listed(v)), "> 0, or a list of them")
    temperature: float = _positive(0.07)
    chunk_size: int = _positive(512)


@dataclass
class OnlineEvalConfig:
    every: int | None = _positive(None)
    unit: Literal["epoch", "step"] = "epoch"
    method: Literal["knn", "probe", "both"] = "knn"
    train_images: int = _positive(10000)
    val_images: int = _positive(2000)
    probe_iter: int = _positive(50)


@dataclass
class GaugesConfig:
    """Label-free gauges of the encoder during pretraining (RankMe and the normalised embeddings' spread) on a
    fixed set of pretraining images; a value under its floor warns once that the representation collapsed."""

    every: int | None = _positive(500)
    images: int = _ranged(2048, lambda v: v >= 2, ">= 2")
    min_rank: float = _non_negative(2.0)
    min_std: float = _non_negative(0.05)


@dataclass
class EmbedConfig:
    """``ssl-pretrain embed``: a collection through a frozen encoder into a memory-mapped embeddings folder."""

    output: str | None = None
    split: Literal["collection", "pretrain", "train", "test"] = "collection"  # collection: every image of data.root
    normalize: bool = False
    projector_images: int = _non_negative(2000)
    chunk_images: int = _positive(8192)


@dataclass
class NeighboursConfig:
    """``ssl-pretrain neighbours``: nearest neighbours of queries and near-duplicates in an embeddings folder."""

    embeddings: str | None = None
    queries: str | list[str] | None = None
    num_queries: int = _positive(8)
    k: int = _positive(8)
    threshold: float = _ranged(0.95, lambda v: -1 <= v <= 1, "in [-1, 1] (cosine similarity)")
    centre: bool = True
    index: Literal["exact", "faiss"] = "exact"
    candidates: int = _positive(32)  # index=faiss: each image's near-duplicates are looked for among this many
    format: Literal["json", "csv"] = "json"
    chunk_size: int = _positive(4096)
    output: str | None = None


@dataclass
class ExportConfig:
    """``ssl-pretrain export``: the encoder's weights for PyTorch/torchvision, or an ONNX graph."""

    format: Literal["torchvision", "onnx"] = "torchvision"


Augment = Literal["none", "flip", "crop_flip", "strong"]


@dataclass
class UnlabeledConfig:
    """``finetune.unlabeled``: how fine-tuning also learns from the unlabeled images (``method``, a name in
    :data:`~ssl_pretrain.registry.UNLABELED_METHODS`) and that method's own options."""

    method: str = "none"
    options: dict = field(default_factory=dict)


@dataclass
class FinetuneConfig:
    freeze_until: str | None = None
    epochs: int = _positive(10)
    steps: int | list[int] | None = _ranged(
        None, lambda v: v is None or (_numbers(v) and all(x > 0 for x in listed(v))), "> 0, or a non-empty list of them"
    )
    batch_size: int = _positive(128)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float | list[float] = _ranged(
        1e-2, lambda v: _numbers(v) and all(x > 0 for x in listed(v)), "> 0, or a non-empty list of them"
    )
    backbone_lr_mult: float = _non_negative(0.1)
    weight_decay: float = _non_negative(1e-4)
    momentum: float = _ranged(0.9, lambda v: 0 <= v < 1, "in [0, 1)")
    warmup_steps: int = _non_negative(50)
    head: Literal["gap", "flatten"] = "gap"
    head_init: Literal["random", "probe"] = "random"
    freeze_bn: bool = False
    augment: Augment | list[Augment] = "crop_flip"
    val_fraction: float = _ranged(0.1, lambda v: 0 < v < 1, "in (0, 1)")
    val_every: int | None = _positive(None)
    keep: Literal["best", "last"] = "best"
    test_last_epoch: bool = False
    init: Literal["pretrained", "random"] = "pretrained"
    # Training from scratch only: the architecture, ``{backbone: NAME, <its options>}`` as in the model section,
    # or a list of them (candidates chosen on validation); null: the pretrained encoder's own.
    model: dict | list[dict] | None = None
    name: str | None = _ranged(None, lambda v: v is None or (v and "/" not in v), "a name without '/'")
    auto_probe_images: int = _positive(5000)
    small_per_class: int = _positive(100)
    pseudo_label_accuracy: bool = False
    unlabeled: UnlabeledConfig = field(default_factory=lambda: UnlabeledConfig())


@dataclass
class EnsembleConfig:
    members: list[str] = field(default_factory=list)
    method: Literal["hard", "soft", "weighted", "stacking"] = "soft"
    weights: list[float] | None = _ranged(
        None, lambda v: v is None or (all(w >= 0 for w in v) and sum(v) > 0), "non-negative with a positive sum"
    )
    val_fraction: float = _ranged(0.1, lambda v: 0 < v < 1, "in (0, 1)")
    output: str | None = None


@dataclass
class GradcamConfig:
    model: str | None = None
    layer: str | None = None
    target_class: int | None = _non_negative(None)
    num_images: int = _ranged(16, lambda v: 1 <= v <= 256, "in 1..256")
    split: Literal["test", "train"] = "test"
    output: str | None = None


@dataclass
class ModelConfig:
    backbone: str = "small_resnet"
    options: dict = field(default_factory=dict)


@dataclass
class TaskConfig:
    name: str = "dae"
    options: dict = field(default_factory=dict)


@dataclass
class Config:
    """The whole run configuration; the top-level keys are validated by :class:`_TopLevel`."""

    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    online: OnlineEvalConfig = field(default_factory=OnlineEvalConfig)
    gauges: GaugesConfig = field(default_factory=GaugesConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    neighbours: NeighboursConfig = field(default_factory=NeighboursConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    gradcam: GradcamConfig = field(default_factory=GradcamConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    def to_dict(self) -> dict:
        """The resolved config as plain YAML-able data (model and task options flattened)."""
        out = dataclasses.asdict(self)
        out["model"] = {"backbone": self.model.backbone, **self.model.options}
        out["task"] = {"name": self.task.name, **self.task.options}
        out["finetune"]["unlabeled"] = {"method": self.finetune.unlabeled.method, **self.finetune.unlabeled.options}
        return out


_FIXED_SECTIONS = {
    "data": DataConfig,
    "trainer": TrainerConfig,
    "evaluation": EvaluationConfig,
    "probe": ProbeConfig,
    "knn": KnnConfig,
    "finetune": FinetuneConfig,
    "online": OnlineEvalConfig,
    "gauges": GaugesConfig,
    "embed": EmbedConfig,
    "neighbours": NeighboursConfig,
    "export": ExportConfig,
    "ensemble": EnsembleConfig,
    "gradcam": GradcamConfig,
}


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
            _note_renamed(key, value)
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


def current_key(key: str) -> str:
    """The name ``key`` has now (itself, unless it is a renamed key)."""
    return DEPRECATED_KEYS.get(key, key)


def _default(key: str) -> Any:
    section, name = key.split(".")
    return next(f.default for f in dataclasses.fields(_FIXED_SECTIONS[section]) if f.name == name)


def _note_renamed(old: str, value: Any) -> None:
    if old not in _SILENT_ALIASES:
        new = DEPRECATED_KEYS[old]
        print(f"ssl-pretrain: note: {old} is deprecated, use {new} (read as {new}={value})", file=sys.stderr)


def _move_deprecated(raw: dict) -> dict:
    """Old keys inside a config file or mapping read as their new names (see :data:`DEPRECATED_KEYS`)."""
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
        _note_renamed(old, value)
    return raw


def build_config(raw: dict) -> Config:
    """Validate a raw nested mapping into a :class:`Config`; raises ConfigError naming the bad key."""
    raw = _move_deprecated(dict(raw))
    raw["finetune"], unlabeled = _unlabeled_section(raw.get("finetune"))
    sections = {name: _build_section(cls, raw.pop(name, None), f"{name}.") for name, cls in _FIXED_SECTIONS.items()}
    from .registry import DATASETS, ENCODERS, TASKS

    if sections["data"].name not in DATASETS:
        raise ConfigError("data.name", f"unknown dataset {sections['data'].name!r}; accepted: {', '.join(DATASETS)}")
    model = ModelConfig(*_build_registered(raw.pop("model", None), "model", "backbone", "small_resnet", ENCODERS))
    task = TaskConfig(*_build_registered(raw.pop("task", None), "task", "name", "dae", TASKS))
    from .registry import UNLABELED_METHODS

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


# Sections a bare name may stand for: ``finetune.unlabeled=fixmatch`` is ``{method: fixmatch}``.
NAMED_SECTIONS = {"finetune.unlabeled": "method"}
# The semi-supervised options before they had their own section: finetune.<old> -> finetune.unlabeled.<new>.
FLAT_UNLABELED_KEYS = {
    "unlabeled_ratio": "ratio",
    "threshold": "threshold",
    "unlabeled_weight": "weight",
    "pretext": "tasks",
}


def _unlabeled_section(finetune: Any) -> tuple[Any, Any]:
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
    from .registry import UNLABELED_METHODS

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


@dataclass
class _TopLevel:
    seed: int = _non_negative(0)
    output_dir: str = "runs"
    run_name: str | None = _ranged(None, lambda v: v is None or (v and "/" not in v), "a name without '/'")
    device: str = "auto"


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
