"""The Python API: everything the ``ssl-pretrain`` command does, callable from a notebook or a script.

    import ssl_pretrain as ssl

    run = ssl.pretrain("configs/fashion_mnist/rotation.yaml", {"trainer.max_steps": 200})
    report = ssl.probe(run, {"probe.layers": "all"})
    print(report.selected["pretrained"])    # the layer validation chose, its validation and test top-1
    encoder = run.encoder()          # an nn.Module: images (B, C, H, W) in [0, 1] -> features (B, D)

A ``config`` is a YAML path, a mapping (nested, or dotted keys), a :class:`~ssl_pretrain.config.Config` or
None (every default); ``overrides`` are ``key=value`` strings or a mapping of dotted keys to values, applied
last. Bad input raises :class:`~ssl_pretrain.errors.BadInput` (a :class:`~ssl_pretrain.errors.ConfigError`
names the key): the exceptions the command line turns into exit code 2. Nothing here prints; the results
are returned as objects (:mod:`ssl_pretrain.evaluation.shared.reports`) and written next to the run as JSON, as by
the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Config, apply_overrides, build_config, read_yaml
from .encoders import Encoder
from .errors import BadInput
from .evaluation.embedding.embed import EmbedSummary
from .evaluation.embedding.find import NeighboursSummary
from .evaluation.frozen.label_free import RankedEncoder
from .evaluation.shared.reports import FinetuneReport, FrozenReport

ConfigLike = str | Path | Mapping | Config | None
Overrides = Mapping[str, Any] | Iterable[str] | None


def _override_strings(overrides: Overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, value in overrides.items()]  # fmt: skip
    if isinstance(overrides, str):
        raise BadInput(f"overrides: give a list of key=value strings or a mapping, not the string {overrides!r}")
    return list(overrides)


def _nested(mapping: Mapping) -> dict:
    """A mapping that may use dotted keys (``{"trainer.lr": 0.01}``) as a nested one."""
    nested: dict = {}
    dotted = []
    for key, value in mapping.items():
        if isinstance(key, str) and "." in key:
            dotted.append(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
        else:
            nested[key] = value
    return apply_overrides(nested, dotted)


def load_config(config: ConfigLike = None, overrides: Overrides = None) -> Config:
    """A validated :class:`Config` from a YAML path, a mapping, a Config or None, with ``overrides`` applied."""
    if isinstance(config, Config):
        raw = config.to_dict()
    elif isinstance(config, Mapping):
        raw = _nested(config)
    elif config is None:
        raw = {}
    else:
        raw = read_yaml(config)
    return build_config(apply_overrides(raw, _override_strings(overrides)))


@dataclass
class Run:
    """A pretraining run directory: its config, its figures and its encoder."""

    directory: Path

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run at ``path`` (a directory holding ``config.yaml``)."""
        directory = Path(path).expanduser()
        if not (directory / "config.yaml").is_file():
            raise BadInput(f"run: {directory} is not a run directory (no config.yaml)")
        return cls(directory)

    @property
    def config(self) -> Config:
        return load_config(self.directory / "config.yaml")

    @property
    def metrics(self) -> dict:
        """``metrics.json``: steps, images/s, final pretext loss and accuracy, ... (empty until it ends)."""
        path = self.directory / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def encoder(self) -> Encoder:
        """The trained encoder (eval mode): images ``(B, C, H, W)`` in [0, 1] -> features ``(B, D)``."""
        return load_encoder(self.directory)


def pretrain(config: ConfigLike = None, overrides: Overrides = None, *, resume: bool = False) -> Run:
    """Train an encoder with the configured pretext task; returns its :class:`Run`."""
    from .train.trainer import pretrain as run_pretraining

    return Run(run_pretraining(load_config(config, overrides), resume=resume))


Source = Run | str | Path | None  # a run, a run directory, an encoder.pt or a checkpoint


def _evaluation_config(source, key: str, config: ConfigLike, overrides: Overrides) -> Config:
    """The config of an evaluation of ``source`` (a Run or a path): ``config``, or else the run's own."""
    extra = _override_strings(overrides)
    if source is not None:
        extra = [f"{key}={source.directory if isinstance(source, Run) else source}", *extra]
        if config is None:
            from .evaluation.shared.encoder_source import defaults_for, saved_run_config

            config = defaults_for(saved_run_config(source.directory if isinstance(source, Run) else source), extra)
    return load_config(config, extra)


def probe(encoder: Source = None, overrides: Overrides = None, *, config: ConfigLike = None) -> FrozenReport:
    """Frozen-encoder linear probe of ``encoder`` (a Run, run directory, ``encoder.pt`` or checkpoint);
    the report (``results``, ``selected``, ``protocol``) is also written to ``probe.json``."""
    from .evaluation.frozen.probe import run_probe

    return run_probe(_evaluation_config(encoder, "evaluation.encoder", config, overrides))


def knn(encoder: Source = None, overrides: Overrides = None, *, config: ConfigLike = None) -> FrozenReport:
    """Weighted kNN on frozen features of ``encoder``; the report also written to ``knn.json``."""
    from .evaluation.frozen.knn import run_knn

    return run_knn(_evaluation_config(encoder, "evaluation.encoder", config, overrides))


def finetune(encoder: Source = None, overrides: Overrides = None, *, config: ConfigLike = None) -> FinetuneReport:
    """Fine-tune ``encoder`` + a linear head on the labels; the report also written to ``finetune.json``."""
    from .evaluation.finetuning.run import run_finetune

    return run_finetune(_evaluation_config(encoder, "evaluation.encoder", config, overrides))


def rank(
    sources: Iterable[Source], overrides: Overrides = None, *, config: ConfigLike = None, snapshots: bool = False
) -> list[RankedEncoder]:
    """Rank runs, ``encoder.pt`` files or checkpoints by RankMe on unlabeled images, highest first; no label is
    read. The images are ``gauges.images`` pretraining images of ``data`` drawn by ``seed`` (from ``config``,
    else the first source's run). ``snapshots``: a run directory also stands for its kept checkpoints."""
    from .build import prepare_device
    from .data import data_info, open_split
    from .evaluation.frozen.label_free import expand_sources, gauge_images, rank_encoders

    paths = [str(s.directory if isinstance(s, Run) else s) for s in sources]
    if not paths:
        raise BadInput("rank: give at least one run directory, encoder.pt or checkpoint")
    found = expand_sources(paths, snapshots)
    cfg = _evaluation_config(None, "evaluation.encoder", config or _saved_config(paths[0], overrides), overrides)
    images = gauge_images(open_split(cfg.data, "pretrain"), cfg.gauges.images, cfg.seed)
    return rank_encoders(found, images, data_info(cfg.data), prepare_device(cfg), cfg.evaluation.batch_size)


def embed(
    encoder: Source = None, overrides: Overrides = None, *, config: ConfigLike = None, force: bool = False
) -> EmbedSummary:
    """Embed a collection (``data.*``, ``embed.split``) with ``encoder`` (a Run, run directory, ``encoder.pt``
    or checkpoint) into ``embed.output`` (default ``<run>/embeddings/<data>-<split>``): ``embeddings.npy``
    (float32, memory-mapped), ``index.csv``, ``skipped.txt``, ``embed.json`` and a TensorBoard projector log.
    An existing finished output is refused unless ``force``; an unfinished one with the same settings is
    continued."""
    from .build import prepare_device
    from .evaluation.embedding.run import default_output, embed_source
    from .utils.precision import announce_precision, resolve_precision

    cfg = _evaluation_config(encoder, "evaluation.encoder", config, overrides)
    source = _encoder_path(cfg.evaluation.encoder, "embed")
    output = default_output(source, cfg.data, cfg.embed.split, cfg.embed.output)
    device = prepare_device(cfg)
    announce_precision(cfg.trainer.precision, device, "embedding")
    return embed_source(
        source, cfg.data, cfg.embed.split, output, normalize=cfg.embed.normalize,
        projector_images=cfg.embed.projector_images, chunk=cfg.embed.chunk_images, batch=cfg.evaluation.batch_size,
        device=device, precision=resolve_precision(cfg.trainer.precision, device), seed=cfg.seed, force=force,
        progress=cfg.trainer.progress,
    )  # fmt: skip


def neighbours(
    embeddings: str | Path | None = None, overrides: Overrides = None, *, config: ConfigLike = None, force: bool = False
) -> NeighboursSummary:
    """Nearest neighbours (cosine; exact, or faiss's HNSW with ``neighbours.index=faiss``) of
    ``neighbours.queries`` (image files or folders; none: sampled rows) in an embeddings folder, as a PNG grid and
    JSON, and its near-duplicates (``neighbours.threshold``): ``pairs.csv`` and groups whose members are within
    the threshold of their first image, as JSON or CSV, in ``neighbours.output`` (default
    ``<embeddings>/neighbours``)."""
    from .build import prepare_device
    from .evaluation.embedding.find import DuplicateOptions, find_neighbours

    extra = [f"neighbours.embeddings={embeddings}"] if embeddings is not None else []
    cfg = load_config(config, [*extra, *_override_strings(overrides)])
    n = cfg.neighbours
    if n.embeddings is None:
        raise BadInput("neighbours.embeddings: give the folder ssl-pretrain embed wrote")
    folder = Path(n.embeddings).expanduser()
    output = Path(n.output).expanduser() if n.output else folder / "neighbours"
    queries = None if n.queries is None else [n.queries] if isinstance(n.queries, str) else list(n.queries)
    duplicates = DuplicateOptions(n.threshold, n.format, n.index, n.candidates)
    return find_neighbours(
        folder, queries, output, num_queries=n.num_queries, k=n.k, duplicates=duplicates, chunk=n.chunk_size,
        device=prepare_device(cfg), seed=cfg.seed, force=force, centre=n.centre, batch=cfg.evaluation.batch_size,
    )  # fmt: skip


def nearest(
    queries, embeddings: str | Path, k: int = 10, *, centre: bool = True, chunk: int = 4096, exclude=None,
    index: str = "exact",
):  # fmt: skip
    """Cosine search: for each row of ``queries`` (an array ``(Q, D)``) the ``k`` most similar rows of the
    embeddings folder ``embeddings``, as ``(similarities (Q, k), rows (Q, k))`` tensors, most similar first.
    ``centre``: centre both on the collection's mean first (as ``neighbours`` does); ``exclude (Q,)``: a row
    each query must not return (its own; -1 for none); ``index``: ``exact`` or ``faiss`` (approximate, HNSW;
    the optional extra). The index file is not read: memory is the vectors' chunks (and faiss's graph)."""
    import torch

    from .evaluation.embedding.search import approximate_top_k, collection_mean, top_k_cosine
    from .evaluation.embedding.store import open_vectors

    vectors, _ = open_vectors(embeddings)
    mean = collection_mean(vectors, chunk) if centre else None
    queries = torch.as_tensor(queries, dtype=torch.float32)
    exclude = None if exclude is None else torch.as_tensor(exclude)
    if index not in ("exact", "faiss"):
        raise BadInput(f"index: exact or faiss, got {index!r}")
    return (approximate_top_k if index == "faiss" else top_k_cosine)(queries, vectors, k, chunk, exclude, mean)


def near_duplicates(
    embeddings: str | Path, threshold: float = 0.95, *, centre: bool = True, chunk: int = 4096, index: str = "exact",
    candidates: int = 32,
):  # fmt: skip
    """The near-duplicates of an embeddings folder: ``(groups, pairs)``. ``pairs``: every ``(row, row,
    similarity)`` with cosine similarity >= ``threshold`` (``index=faiss``: among each row's ``candidates``
    approximate nearest neighbours); ``groups``: lists of rows, biggest first, each member within the threshold
    of its group's first row (groups do not chain)."""
    from .evaluation.embedding.duplicates import LeaderGroups, grouped_pair_chunks
    from .evaluation.embedding.search import collection_mean
    from .evaluation.embedding.store import open_vectors

    vectors, _ = open_vectors(embeddings)
    mean = collection_mean(vectors, chunk) if centre else None
    groups, pairs = LeaderGroups.empty(len(vectors)), []
    for i, j, sims in grouped_pair_chunks(vectors, threshold, chunk, mean, index, candidates, groups):
        pairs += zip(i.tolist(), j.tolist(), sims.tolist(), strict=True)
    return groups.groups(), pairs


def _encoder_path(value: str | None, command: str) -> Path:
    if value is None:
        raise BadInput(f"{command}: give evaluation.encoder=PATH (a run directory, encoder.pt or checkpoint)")
    path = Path(value).expanduser()
    if not path.exists():
        raise BadInput(f"evaluation.encoder: {path} does not exist")
    return path


def _saved_config(path: str, overrides: Overrides) -> dict:
    from .evaluation.shared.encoder_source import defaults_for, saved_run_config

    saved = saved_run_config(path)
    if saved is None:
        raise BadInput(f"rank: {path} is not inside a run directory; give a config (-c) naming the data")
    return defaults_for(saved, _override_strings(overrides))


def load_encoder(path: str | Path | Run) -> Encoder:
    """The encoder of a run directory, an exported ``encoder.pt`` or a training checkpoint, in eval mode."""
    from .evaluation.shared.encoder_source import load_encoder as load

    return load(path.directory if isinstance(path, Run) else path).eval()
