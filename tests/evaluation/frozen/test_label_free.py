"""``ssl-pretrain rank`` and ``ssl_pretrain.rank``: runs and their checkpoints ranked by RankMe on unlabeled
images, the figures those of the run's own gauges; bad paths exit 2."""

import json

import ssl_pretrain as ssl
from ssl_pretrain.cli import main

from ...helpers import folder_overrides


def _run(image_folder, out, name, extra=()):
    args = ["pretrain", "-c", "configs/fashion_mnist/vicreg.yaml", *folder_overrides(image_folder, out, name)]
    assert main([*args, "trainer.max_steps=4", "trainer.keep_last=2", "gauges.images=24", *extra]) == 0
    return out / name


def test_rank_orders_runs_and_snapshots_and_agrees_with_the_gauges(image_folder, tmp_path, capsys):
    trained = _run(image_folder, tmp_path, "trained")
    untrained = _run(image_folder, tmp_path, "other", ["seed=3"])
    out = tmp_path / "ranking.json"
    assert main(["rank", "--snapshots", "--output", str(out), str(trained), str(untrained), "gauges.images=24"]) == 0
    printed = capsys.readouterr().out
    assert "RankMe on 24 unlabeled images" in printed and str(trained) in printed
    ranked = json.loads(out.read_text())
    assert len(ranked) == 6, "two runs and the two kept snapshots (steps 2 and 4) of each"
    assert [r["rankme"] for r in ranked] == sorted((r["rankme"] for r in ranked), reverse=True)
    final = next(r for r in ranked if r["path"] == str(trained))
    assert final["rankme"] == json.loads((trained / "metrics.json").read_text())["gauge_rankme"]
    last = next(r for r in ranked if r["path"] == str(trained / "checkpoints" / "step-00000004.pt"))
    assert last["rankme"] == final["rankme"], "the last checkpoint holds the run's encoder"
    api = ssl.rank([trained], {"gauges.images": 24})
    assert api[0].rankme == final["rankme"] and api[0].images == 24


def test_rank_refuses_a_missing_path_and_a_lone_encoder_without_data(image_folder, tmp_path, capsys):
    assert main(["rank", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    trained = _run(image_folder, tmp_path, "trained")
    lone = tmp_path / "encoder.pt"
    lone.write_bytes((trained / "encoder.pt").read_bytes())
    assert main(["rank", str(lone)]) == 2
    assert "give a config (-c) naming the data" in capsys.readouterr().err
