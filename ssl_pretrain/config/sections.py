"""The config's sections: one validated dataclass per section (``data``, ``trainer``, ``probe``, ...), each key
with its type, default and accepted range, and :class:`Config`, the whole of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


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
    labels: str | None = None  # a CSV naming the labeled images (path,label / index[,label]); the others unlabeled


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
class SelectConfig:
    """``ssl-pretrain select``: which images to label (docs/evaluation.md#which-images-to-label)."""

    source: str | None = None  # an embeddings folder, or an encoder whose collection is embedded first
    budget: int = _positive(10)
    strategy: Literal["typiclust", "probcover", "kmeans", "kcenter", "random"] = "typiclust"
    output: str | None = None
    max_clusters: int = _ranged(500, lambda v: v >= 1, ">= 1")  # typiclust: at most this many clusters
    min_cluster_size: int = _positive(5)  # typiclust: smaller clusters are left out
    neighbours: int = _positive(20)  # typiclust: typicality's nearest neighbours
    clusters: int = _ranged(10, lambda v: v >= 2, ">= 2")  # probcover: k-means pseudo-classes of the purity rule
    purity: float = _ranged(0.95, lambda v: 0 < v <= 1, "in (0, 1]")  # probcover: balls this pure
    iterations: int = _positive(20)  # k-means iterations
    typicality_sample: int = _ranged(10000, lambda v: v >= 2, ">= 2")  # typiclust: rows of a cluster scored
    chunk_size: int = _positive(4096)


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
    # auto: the validation split is held out only where something is chosen on it; always: held out anyway
    validation: Literal["auto", "always"] = "auto"
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
    select: SelectConfig = field(default_factory=SelectConfig)
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
    "select": SelectConfig,
    "ensemble": EnsembleConfig,
    "gradcam": GradcamConfig,
}


@dataclass
class _TopLevel:
    seed: int = _non_negative(0)
    output_dir: str = "runs"
    run_name: str | None = _ranged(None, lambda v: v is None or (v and "/" not in v), "a name without '/'")
    device: str = "auto"
