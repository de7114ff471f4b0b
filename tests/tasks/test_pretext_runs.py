"""Every pretext task through the CLI on a Fashion-MNIST stand-in: run files, TensorBoard, probes."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main

from ..helpers import TINY

IMAGE_TAGS = {
    "rotation": "rotation/rows_0_90_180_270",
    "exemplar": "exemplar/seed_then_copies",
    "relative_patch": "relative_patch/patch_grids",
}


def _pretrain(task, root, out, *extra):
    data = [f"data.root={root}", "data.download=false", f"output_dir={out}", f"run_name={task}"]
    return main(["pretrain", "-c", f"configs/fashion_mnist/{task}.yaml", *TINY, *data, *extra])


@pytest.mark.parametrize("task", sorted(IMAGE_TAGS))
def test_each_task_trains_and_shows_what_it_trains_on(task, fashion_mnist_root, tmp_path):
    assert _pretrain(task, fashion_mnist_root, tmp_path) == 0
    run = tmp_path / task
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["steps"] == 3 and 0 <= metrics["pretext_accuracy"] <= 1
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/accuracy")] == [1, 2, 3]
    images = events.Images(IMAGE_TAGS[task])
    assert 2 in [e.step for e in images] and images[-1].width > 28 and images[-1].height > 28
    assert (run / "encoder.pt").is_file()


def test_exemplar_with_more_seeds_than_images_is_bad_input(fashion_mnist_root, tmp_path, capsys):
    assert _pretrain("exemplar", fashion_mnist_root, tmp_path, "task.loss=classifier", "task.num_seeds=500") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "task.num_seeds" in err and "64 images" in err


def test_exemplar_classifier_trains_on_the_chosen_seeds(fashion_mnist_root, tmp_path):
    assert _pretrain("exemplar", fashion_mnist_root, tmp_path, "task.loss=classifier", "task.num_seeds=16") == 0
    metrics = json.loads((tmp_path / "exemplar" / "metrics.json").read_text())
    assert metrics["images_seen"] == 3 * 8  # seed images per step; the step holds 2 copies of each


def test_relative_patch_run_is_probed_on_its_patch_grid_and_whole_images(fashion_mnist_root, tmp_path):
    assert _pretrain("relative_patch", fashion_mnist_root, tmp_path) == 0
    run = tmp_path / "relative_patch"
    assert main(["probe", f"evaluation.encoder={run}", "probe.patch_grid=true", "evaluation.control=all"]) == 0
    report = json.loads((run / "probe.json").read_text())
    rows = {r["encoder"]: r for r in report["results"]}
    assert rows["pretrained"]["layer"] == "patch_grid" and rows["random_init"]["layer"] == "patch_grid"
    # The run's own grid: 28 px images upsampled to 48, 12 px patches, gap 4, no jitter.
    assert report["protocol"]["patch_grid"] == {"size": 48, "patch": 12, "gap": 4, "jitter": 0}
    assert report["protocol"]["image_size"] == 48 and "3x3 patch grid" in report["protocol"]["pooling"]
    assert rows["raw_pixels"]["feature_dim"] == 48 * 48
    assert main(["probe", f"evaluation.encoder={run}"]) == 0
    whole = json.loads((run / "probe.json").read_text())
    assert whole["results"][0]["layer"] == "pooled" and whole["protocol"]["image_size"] == 28
    assert whole["protocol"]["patch_grid"] is None
