"""The Python API: everything the ``ssl-pretrain`` command does, callable from a notebook or a script.

    import ssl_pretrain as ssl

    run = ssl.pretrain("configs/fashion_mnist/rotation.yaml", {"trainer.max_steps": 200})
    report = ssl.probe(run, {"probe.layers": "all"})
    print(report.selected["pretrained"])    # the layer validation chose, its validation and test top-1
    encoder = run.encoder()          # an nn.Module: images (B, C, H, W) in [0, 1] -> features (B, D)

Every command of :data:`~ssl_pretrain.commands.COMMANDS` is a function here, generated from its row:
``ssl.<name>(source, overrides, *, config=None, ...)``, where ``source`` is what the command line takes
positionally (an encoder: a :class:`Run`, a run directory, an ``encoder.pt`` or a checkpoint). A ``config``
is a YAML path, a mapping (nested, or dotted keys), a :class:`~ssl_pretrain.config.Config` or None;
``overrides`` are ``key=value`` strings or a mapping of dotted keys to values, applied last. Bad input
raises :class:`~ssl_pretrain.errors.BadInput` (a :class:`~ssl_pretrain.errors.ConfigError` names the key):
the exceptions the command line turns into exit code 2. Nothing here prints but progress; results are
returned as objects and written next to the run as JSON, as by the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .commands import COMMANDS
from .commands.command import override_strings, raw_config
from .commands.functions import command_function
from .commands.run_dir import Run
from .commands.running import command_config
from .commands.table import BUILT_IN
from .config import Config, apply_overrides, build_config
from .encoders import Encoder
from .errors import BadInput

# ssl.pretrain, ssl.probe, ...: one function per built-in row; registered and plugin commands by __getattr__.
globals().update({name: command_function(row) for name, row in BUILT_IN.items()})


def __getattr__(name: str):
    """A command added after import (``register_command``) or by a plugin, as ``ssl.<name>``."""
    if not name.startswith("_") and name in COMMANDS:
        return command_function(COMMANDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_config(config: Any = None, overrides: Any = None) -> Config:
    """A validated :class:`Config` from a YAML path, a mapping, a Config or None, with ``overrides`` applied."""
    return build_config(apply_overrides(raw_config(config), override_strings(overrides)))


def probe_validation(encoder: Any = None, overrides: Any = None, *, config: Any = None) -> dict[str, float]:
    """``{layer: validation top-1}`` of a linear probe with the first ``probe.l2`` on the hold-out fine-tuning
    validates on (same seed and ``evaluation.val_fraction``): a probe setting to set against a fine-tuning run
    on the same images. Nothing is chosen, the test set is not scored and nothing is written."""
    from .build import start
    from .evaluation.frozen.probe import probe_holdout_scores

    probe = COMMANDS["probe"]
    paths = {} if encoder is None else {"encoder": encoder}
    cfg = command_config(probe, config, override_strings(overrides), paths, strict=False)
    return probe_holdout_scores(cfg, start(cfg, probe.job))


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


def load_encoder(path: str | Path | Run) -> Encoder:
    """The encoder of a run directory, an exported ``encoder.pt`` or a training checkpoint, in eval mode."""
    from .evaluation.shared.encoder_source import load_encoder as load

    return load(path.directory if isinstance(path, Run) else path).eval()
