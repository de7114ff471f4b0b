"""Label-free choice between encoders: rank runs and checkpoints by RankMe (Garrido et al. 2023), the effective
rank of their embeddings of a fixed set of unlabeled images, with no label read.

The images are the ones the pretraining gauges measure (``gauges.images`` pretraining images drawn by the seed),
so ``ssl-pretrain rank`` on a run's checkpoints reproduces the ``gauges/rankme`` curve of its TensorBoard.
How far the ranking agrees with a labeled probe is measured by ``benchmarks/ssl_methods.py`` (docs/evaluation.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ...config import Config
from ...data import DataInfo, data_info, open_split
from ...data.loader import seeded_subset
from ...errors import BadInput
from ...utils.files import atomic_write_bytes
from ...utils.spectrum import normalised_std, rankme
from ..features.feature_view import FeatureView
from ..features.features import extract_features
from ..shared.encoder_source import load_encoder

GAUGE_SEED_OFFSET = 2  # the gauges' images: seeded by the run's seed + 2 (the online evaluation's use + 0, + 1)


def gauge_images(dataset, count: int, seed: int):
    """The fixed set of pretraining images gauges and rankings embed."""
    return seeded_subset(dataset, count, seed + GAUGE_SEED_OFFSET)


@torch.no_grad()
def label_free_figures(encoder: nn.Module, images, info: DataInfo, device: torch.device, batch: int) -> dict:
    """``{"rankme", "std"}`` of ``encoder``'s globally pooled embeddings of ``images`` (fp32, eval mode; the
    caller puts modes back)."""
    view = FeatureView(encoder)
    features, _ = extract_features(view, images, info, device, batch)
    pooled = features[view.layer]
    return {"rankme": round(rankme(pooled), 3), "std": round(normalised_std(pooled), 4)}


@dataclass
class RankedEncoder:
    """One encoder's label-free figures: RankMe and the normalised spread of its embeddings of ``images``."""

    path: str
    rankme: float
    std: float
    images: int


def check_fits(encoder, info: DataInfo, source: Path) -> None:
    spec = encoder.spec
    if (spec.in_channels, spec.image_size) != (info.channels, info.image_size):
        raise BadInput(
            f"rank: {source} takes {spec.in_channels}-channel {spec.image_size} px images but the data gives "
            f"{info.channels}-channel {info.image_size} px ones (set data.* to the data it was pretrained on)"
        )


def rank_encoders(sources: list[Path], images, info: DataInfo, device: torch.device, batch: int) -> list[RankedEncoder]:
    """Every source (run directory, ``encoder.pt`` or checkpoint) measured on ``images``, highest RankMe first."""
    ranked = []
    for source in sources:
        encoder = load_encoder(source).to(device)
        check_fits(encoder, info, source)
        figures = label_free_figures(encoder, images, info, device, batch)
        ranked.append(RankedEncoder(str(source), **figures, images=len(images)))
    return sorted(ranked, key=lambda r: -r.rankme)


def expand_sources(paths: list[str], snapshots: bool) -> list[Path]:
    """The paths as given; with ``snapshots``, a run directory also stands for each ``checkpoints/step-*.pt``."""
    sources = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.exists():
            raise BadInput(f"rank: {path} does not exist")
        sources.append(path)
        if snapshots and path.is_dir():
            sources.extend(sorted((path / "checkpoints").glob("step-*.pt")))
    return sources


def format_ranking(ranked: list[RankedEncoder]) -> str:
    count = ranked[0].images if ranked else 0
    lines = [
        f"RankMe on {count} unlabeled images (no labels read), highest first",
        "",
        "| # | RankMe | std | encoder |",
    ]
    lines.append("| ---: | ---: | ---: | --- |")
    lines += [f"| {i} | {r.rankme:.2f} | {r.std:.3f} | {r.path} |" for i, r in enumerate(ranked, 1)]
    return "\n".join(lines)


def ranking_record(ranked: list[RankedEncoder]) -> list[dict]:
    return [asdict(r) for r in ranked]


def run_rank(
    config: Config, device: torch.device, sources: list[str], snapshots: bool = False, output: str | None = None
) -> list[RankedEncoder]:
    """Rank ``sources`` (runs, ``encoder.pt`` files or checkpoints) by RankMe on ``gauges.images`` pretraining
    images of ``data`` drawn by ``seed``, highest first; no label is read. ``snapshots``: a run directory also
    stands for its kept checkpoints; ``output``: the ranking also written there as JSON."""
    found = expand_sources(sources, snapshots)
    images = gauge_images(open_split(config.data, "pretrain"), config.gauges.images, config.seed)
    ranked = rank_encoders(found, images, data_info(config.data), device, config.evaluation.batch_size)
    if output:
        atomic_write_bytes(Path(output), json.dumps(ranking_record(ranked), indent=2).encode())
    return ranked
