"""Which images to label: the five strategies on embeddings whose structure is known, and the command."""

import csv

import numpy as np
import pytest
import torch

from ssl_pretrain.cli import main
from ssl_pretrain.errors import BadInput
from ssl_pretrain.evaluation.embedding.clusters import UnitVectors
from ssl_pretrain.evaluation.embedding.coverage import ball_edges, nearest_other_distance, purest_radius
from ssl_pretrain.evaluation.embedding.store import VectorFile
from ssl_pretrain.evaluation.embedding.strategies import SelectOptions, choose

from ...helpers import folder_overrides

STRATEGIES = ["typiclust", "probcover", "kmeans", "kcenter", "random"]
OPTIONS = SelectOptions(max_clusters=50, min_cluster_size=3, clusters=6)


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


def test_probcover_balls_are_exact_and_its_radius_the_largest_that_keeps_the_purity():
    x, _ = _blobs(n=300)
    vectors = UnitVectors(x, chunk=64)  # five chunks: every chunk against every other
    pseudo = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(1))
    distance = 1 - vectors.held @ vectors.held.T
    other = distance.masked_fill(pseudo[:, None] == pseudo[None, :], float("inf")).min(dim=1).values
    nearest = nearest_other_distance(vectors, pseudo)
    assert torch.allclose(nearest, other, atol=1e-5)
    radius, purity = purest_radius(nearest, 0.9)
    assert purity == int((nearest >= radius).sum()) / 300 >= 0.9
    assert int((nearest > radius).sum()) / 300 < 0.9, "a larger radius would leave fewer pure balls"
    centre, member = ball_edges(vectors, radius)
    expected = ((distance < radius) & ~torch.eye(300, dtype=torch.bool)).nonzero()
    assert sorted(zip(centre.tolist(), member.tolist(), strict=True)) == [tuple(p) for p in expected.tolist()]


def test_probcover_is_not_drawn_into_one_dense_class():
    """One class 30 times as common and tight (its balls the largest, thousands of rows, first in the file): one
    pick covers it, the others go to the other classes."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=generator) * 4
    labels = torch.cat([torch.zeros(3000, dtype=torch.long), torch.arange(1, 6).repeat_interleave(100)])
    noise = torch.where(labels[:, None] == 0, 0.02, 1.0) * torch.randn(len(labels), 16, generator=generator)
    x = (centres[labels] + noise).numpy().astype(np.float32)
    picks, details = choose("probcover", UnitVectors(x), torch.zeros(len(x), dtype=torch.bool), 6, 0, OPTIONS)
    assert len(set(labels[picks.rows].tolist())) == 6, (labels[picks.rows].tolist(), details)


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
