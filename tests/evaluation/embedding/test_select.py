"""Which images to label: the five strategies on embeddings whose structure is known, and the command."""

import csv

import numpy as np
import pytest
import torch

from ssl_pretrain.cli import main
from ssl_pretrain.errors import BadInput
from ssl_pretrain.evaluation.embedding.clusters import UnitVectors
from ssl_pretrain.evaluation.embedding.store import VectorFile
from ssl_pretrain.evaluation.embedding.strategies import SelectOptions, choose

from ...helpers import folder_overrides

STRATEGIES = ["typiclust", "probcover", "kmeans", "kcenter", "random"]
OPTIONS = SelectOptions(max_clusters=50, min_cluster_size=3, clusters=6, ball_neighbours=32)


def _blobs(n=600, classes=6, dim=16, seed=0):
    """Rows around ``classes`` well separated centres; one class four times as common as the others."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 4
    weights = torch.tensor([4.0] + [1.0] * (classes - 1))
    labels = torch.multinomial(weights, n, replacement=True, generator=generator)
    return (centres[labels] + torch.randn(n, dim, generator=generator)).numpy().astype(np.float32), labels


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_picks_distinct_unlabeled_rows_the_same_way_for_a_seed(strategy):
    x, labels = _blobs()
    labeled = torch.zeros(len(x), dtype=torch.bool)
    labeled[:3] = True  # a next round: these are labeled already
    vectors = UnitVectors(x, chunk=128)
    picks, _ = choose(strategy, vectors, labeled, 12, 0, OPTIONS)
    again, _ = choose(strategy, UnitVectors(x, chunk=128), labeled, 12, 0, OPTIONS)
    assert picks.rows == again.rows and len(set(picks.rows)) == 12 and not set(picks.rows) & {0, 1, 2}
    if strategy != "random":  # streamed from disk (no memory for the rows) the same picks
        streamed = UnitVectors(_file(x), chunk=128, memory_mb=0)
        assert streamed.held is None and choose(strategy, streamed, labeled, 12, 0, OPTIONS)[0].rows == picks.rows


def _file(x):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "embeddings.npy"
    np.save(path, x)
    return VectorFile(path)


def test_the_clustering_strategies_cover_every_class_at_one_label_per_class_where_random_does_not():
    x, labels = _blobs()
    vectors, none = UnitVectors(x), torch.zeros(len(x), dtype=torch.bool)
    covered = {s: len(set(labels[choose(s, vectors, none, 6, 0, OPTIONS)[0].rows].tolist())) for s in STRATEGIES}
    assert covered["typiclust"] == covered["kmeans"] == covered["kcenter"] == 6, covered
    random_mean = np.mean(
        [len(set(labels[choose("random", vectors, none, 6, s, OPTIONS)[0].rows].tolist())) for s in range(20)]
    )
    assert random_mean < 5.5 and covered["probcover"] >= 5, (random_mean, covered)


def test_the_config_accepts_every_strategy_there_is():
    from typing import get_args, get_type_hints

    from ssl_pretrain.config.sections import SelectConfig
    from ssl_pretrain.evaluation.embedding.strategies import STRATEGIES as BUILT

    assert set(get_args(get_type_hints(SelectConfig)["strategy"])) == set(BUILT) == set(STRATEGIES)


def test_a_budget_over_the_unlabeled_rows_is_refused():
    x, _ = _blobs(n=20)
    with pytest.raises(BadInput, match="select.budget: 30 asked, but only 20 images are unlabeled"):
        choose("random", UnitVectors(x), torch.zeros(20, dtype=torch.bool), 30, 0, OPTIONS)


def test_select_writes_the_picks_a_template_and_a_sheet_and_the_next_round_adds_to_them(image_folder, tmp_path, capsys):
    assert (
        main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    )
    run = tmp_path / "run"
    small = ["select.max_clusters=6", "select.min_cluster_size=2", "select.clusters=3"]
    assert main(["select", str(run), "select.budget=4", *small]) == 0
    out = run / "embeddings" / "image_folder-collection" / "selection-typiclust-4"
    picked = [row["path"] for row in csv.DictReader((out / "selection.csv").open())]
    assert len(picked) == 4 and (out / "selection.png").stat().st_size > 0
    # the person labels them (here: by their folder) and asks for four more
    filled = tmp_path / "labels.csv"
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert [r["path"] for r in rows] == picked and all(r["label"] == "" for r in rows)
    filled.write_text("path,label\n" + "".join(f"{p},{p.split('/')[0]}\n" for p in picked))
    assert main(["select", str(out.parent), "select.budget=4", f"data.labels={filled}", *small]) == 0
    assert "4 images chosen by typiclust" in capsys.readouterr().out
    second = [row["path"] for row in csv.DictReader((out / "selection.csv").open())]
    assert len(second) == 4 and not set(second) & set(picked), "the labeled images are not picked again"
    template = list(csv.DictReader((out / "labels.csv").open()))
    assert [r["path"] for r in template[:4]] == picked and [r["label"] for r in template[:4]] == [
        p.split("/")[0] for p in picked
    ]
