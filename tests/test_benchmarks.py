"""The benchmark scripts' --smoke modes, so they do not rot (their figures come from full runs)."""

import importlib
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssl_pretrain.utils.precision import cpu_has_native_bf16

from .helpers import TINY


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_relative_patch_encoding_benchmark_smoke():
    done = _run("benchmarks/relative_patch_encoding.py", "--smoke")
    assert done.returncode == 0, done.stderr
    assert "| naive pair-wise | 16 |" in done.stdout and "Same logits in eval mode: True" in done.stdout


def test_probe_speed_benchmark_smoke(fashion_mnist_root, tmp_path):
    from ssl_pretrain.cli import main

    from .helpers import TINY

    args = [
        "pretrain",
        "-c",
        "configs/fashion_mnist/dae.yaml",
        *TINY,
        f"data.root={fashion_mnist_root}",
        "data.download=false",
        f"output_dir={tmp_path}",
        "run_name=tiny",
    ]
    assert main(args) == 0
    done = _run("benchmarks/probe_speed.py", "--run", str(tmp_path / "tiny"), "--smoke")
    assert done.returncode == 0, done.stderr
    assert "64 x 32 training features" in done.stdout  # widths [4, 8]: 8 channels pooled to 2x2
    assert "| scikit-learn LogisticRegression (lbfgs" in done.stdout and "Speed-up: **" in done.stdout


def test_distributed_pretrain_benchmark_smoke(fashion_mnist_root):
    done = _run(
        "benchmarks/distributed_pretrain.py",
        "--smoke",
        "--global-batch",
        "8",
        f"data.root={fashion_mnist_root}",
        "data.download=false",
        "model.widths=[4,8]",
        "model.blocks=[1,1]",
    )
    assert done.returncode == 0, done.stderr
    assert "| one process | 1 | 8 | 8 | 4 |" in done.stdout and "| torchrun | 2 | 4 | 8 | 4 |" in done.stdout
    assert "Replicas bit-identical after training: True" in done.stdout


def _tiny_fashion_mnist(root) -> list[str]:
    return [f"data.root={root}", "data.download=false", "model.widths=[4,8]", "model.blocks=[1,1]"]


def test_framework_overhead_benchmark_smoke(fashion_mnist_root):
    done = _run(
        "benchmarks/framework_overhead.py", "--smoke", "--tasks=rotation", *_tiny_fashion_mnist(fashion_mnist_root)
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| rotation | 128 |"))
    bare, ours, ratio = (float(cell.strip(" *x")) for cell in row.split("|")[3:6])
    # images/s are printed rounded to integers: the ratio must lie within what that rounding allows
    low, high = (ours - 0.5) / (bare + 0.5), (ours + 0.5) / (bare - 0.5)
    assert bare > 0 and ours > 0 and low - 0.005 <= ratio <= high + 0.005


def test_augmentation_speed_benchmark_smoke():
    done = _run("benchmarks/augmentation_speed.py", "--smoke", "--sizes", "28", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "| 28 px |" in done.stdout and "RandomAffine" in done.stdout and "RandomHueDirect" in done.stdout


def test_hardware_use_benchmark_smoke(fashion_mnist_root):
    done = _run("benchmarks/hardware_use.py", "--smoke", "--tasks=dae", *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    assert "| dae | 128 |" in done.stdout and "matmul peak:" in done.stdout
    expected = "bf16" if cpu_has_native_bf16() else "fp32"  # trainer.precision=auto on this CPU
    assert f"Measured {expected} matmul peak:" in done.stdout and f"steps in {expected}" in done.stdout


def test_scaling_benchmark_smoke(fashion_mnist_root):
    done = _run("benchmarks/scaling.py", "--smoke", *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    assert "| 64 |" in done.stdout and "| 16 | 2 |" in done.stdout


def test_low_label_benchmark_smoke(fashion_mnist_root, tmp_path):
    runs = tmp_path / "runs"
    args = ["benchmarks/low_label.py", "--smoke", "--runs", str(runs), "--configs", "rotation", "multi"]
    args += ["--fractions", "0.5", "1.0", "--finetune-fractions", "0.5", "--semi-configs", "multi"]
    args += ["--seeded-fractions", "0.5", "--layer-fractions", "0.5", "--seeds", "2", "--scratch-models"]
    args += [
        "{backbone: small_resnet, widths: [4, 8], blocks: [1, 1]}",
        "{backbone: small_resnet, widths: [8], blocks: [1]}",
    ]
    done = _run(*args, "--folded-fractions", "0.5", "--val-folds", "2", *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (
        "### 0.5 of the labels (2 label seeds; probes and kNN choose by 2-fold cross-validation; the pick compares "
        "them with fine-tuning on its hold-out; fine-tuning keeps its last epoch)" in out
    )
    assert "### 1 of the labels (1 label seed; probes and kNN choose by one hold-out; fine-tuning keeps" in out
    rate = re.search(r"multi: [\d.]+ min, \d+ images, (\d+) images/s, (\d+) views/s \(pretrained now\)", out)
    assert rate and int(rate[2]) > int(rate[1]) > 0, "pretraining speed beside the minutes; multi-task's views too"
    tuned = [json.loads(p.read_text()) for p in (runs / "multi" / "finetune").glob("lowlabel-0.5-*/finetune.json")]
    assert len(tuned) == 6 and {t["protocol"]["keep"] for t in tuned} == {"last"}, "full and auto, semi; 2 seeds"
    from_scratch = (runs / "rotation" / "finetune").glob("lowlabel-*-random-*/finetune.json")
    scratch = [json.loads(p.read_text()) for p in from_scratch]
    heads = {(t["protocol"]["init"], t["protocol"]["head"], t["protocol"]["head_init"]) for t in tuned + scratch}
    assert heads == {
        ("pretrained", "linear on the flattened last stage", "probe"),
        ("random", "linear on global average pooling", "random"),
    }, "each start with its own head (benchmarks/low_label.py HEAD)"
    models = {"small_resnet-blocks=1x1-widths=4x8", "small_resnet-blocks=1-widths=8"}
    for run in scratch:  # the control chose its architecture among the candidates asked for
        assert {c["model"] for c in run["selected"]["candidates"]} == models
        chosen = run["selected"]["chosen"]["model"]
        widths = [int(w) for w in chosen.split("widths=")[1].split("x")]
        assert run["protocol"]["encoder_options"]["widths"] == widths, "the chosen architecture was tested"
    (record_file,) = runs.glob("low_label-*.json")  # every cell as data, beside the printout
    record = json.loads(record_file.read_text())["fractions"]
    cell = record["0.5"]["multi"]["ft_full"][0]
    assert {"val", "test", "note", "holdout"} <= set(cell) and len(record["0.5"]["multi"]["picked"]) == 2
    assert record["0.5"]["multi"]["best"][0]["holdout"] is not None, "the probe's hold-out score the pick compared"
    mean = statistics.mean(c["test"] for c in record["0.5"]["multi"]["ft_full"])
    assert f"{mean:.2f} +- " in out, "the record holds the cells the table prints"
    probe = json.loads((runs / "multi" / "probe-labels0.5.json").read_text())
    assert probe["protocol"]["val_folds"] == 2 and "2-fold" in probe["selected"]["pretrained"]["validation"]
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| encoder")]
    names = [row.split(" | ")[0].lstrip("| ") for row in rows]
    controls = ["random init", "raw pixels", "supervised from scratch"]
    assert names == ["rotation", "multi", *controls, "rotation", "multi", *controls]
    half = rows[:5]
    assert all("+-" in row for row in half[:2]), "mean and spread over the two seeds"
    assert "l2 " in half[0] and "k " in half[0] and "epoch " in half[0]
    assert half[1].count("min") == 3 and half[4].count("min") == 2, "semi-supervised: multi and from scratch"
    assert "- 0.5 of the labels: best encoder on validation" in out
    # Without fine-tuning (1.0 here) the pick is among the probes, and multi-task is still set against rotation.
    assert all(row.split(" | ")[6] != "-" for row in rows[:2] + rows[5:7]), "picked at both fractions"
    for fraction in ("0.5", "1"):
        assert f"- {fraction} of the labels, picked on validation: multi-task " in out
    assert out.count("vs single tasks rotation ") == 2
    assert "GAP linear probe, all labels, best config on validation:" in out
    assert "GAP linear probe, 0.5 of the labels, best config on validation:" in out
    best_layer = [row.split(" | ")[2] for row in rows]  # --layer-fractions 0.5: no best-layer probe at 1.0
    assert "-" not in best_layer[:3] and best_layer[3:] == ["-"] * 7, best_layer
    # A second run reuses the finished pretraining runs; --freeze-points full leaves out the auto fine-tuning.
    again = _run(
        *args[:5], "rotation", "--fractions", "0.5", "--finetune-fractions", "0.5", "--freeze-points", "full",
        "--seeds", "1", *_tiny_fashion_mnist(fashion_mnist_root),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "(reused)" in again.stdout and "choose by one hold-out" in again.stdout  # folded: 0.01 by default
    assert "fine-tuning keeps its best epoch" in again.stdout
    rotation = next(line for line in again.stdout.splitlines() if line.startswith("| rotation |"))
    assert rotation.split(" | ")[4].endswith("min") and rotation.split(" | ")[5] == "-", rotation


def test_demo_run_benchmark_smoke(fashion_mnist_root):
    done = _run("benchmarks/demo_run.py", "--smoke", f"data.root={fashion_mnist_root}", "data.download=false")
    assert done.returncode == 0, done.stderr
    assert "DAE-pretrained encoder:" in done.stdout and "Wall time, start to end:" in done.stdout


def _can_drop_page_cache() -> bool:
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def test_data_loading_benchmark_smoke():
    # A cold page cache needs root on Linux (as on CI and this machine); elsewhere the warm rows alone.
    caches = ["warm", "cold"] if _can_drop_page_cache() else ["warm"]
    done = _run(
        "benchmarks/data_loading.py", "--smoke", "--sizes", "32", "--workers", "0", "1", "--configs", "rotation",
        "--cache", *caches,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 32 px JPEG |")]
    assert [row.split("|")[2:4] for row in rows] == [[f" {c} ", f" {w} "] for c in caches for w in (0, 1)]
    assert all(row.count("|") == 7 for row in rows)
    assert "| rotation | 128 |" in done.stdout and ("the model |" in done.stdout or "the loader |" in done.stdout)


def test_host_syncs_benchmark_smoke(fashion_mnist_root):
    args = ["--smoke", f"data.root={fashion_mnist_root}", "data.download=false", "--precision", "fp32", "fp16"]
    done = _run("benchmarks/host_syncs.py", *args)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "**" in line]
    shipped = len(list(Path("configs/fashion_mnist").glob("*.yaml")))
    assert len(rows) == 2 * shipped and all("| 3 | **0** | - |" in row for row in rows), rows


def test_semi_curve_benchmark_smoke(fashion_mnist_root, tmp_path):
    from ssl_pretrain.cli import main

    from .helpers import TINY

    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *TINY, f"data.root={fashion_mnist_root}"]
    assert main([*args, "data.download=false", f"output_dir={tmp_path}", "run_name=tiny"]) == 0
    run = str(tmp_path / "tiny")
    done = _run("benchmarks/semi_curve.py", "--run", run, "--smoke", "--fraction", "0.5", "--study")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 2 |")]
    assert [row.split(" | ")[1] for row in rows] == ["pretrained", "random"]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "tiny" / "finetune").glob("*/finetune.json")]
    assert len(runs) == 2 and {r["protocol"]["keep"] for r in runs} == {"last"}, "each budget scored at its end"
    (record_file,) = (tmp_path / "tiny" / "finetune").glob("semi_curve-*.json")
    cells = json.loads(record_file.read_text())["cells"]
    assert [(c["steps"], c["start"]) for c in cells] == [(2, "pretrained"), (2, "random")]
    # --study: the last pseudo-label check of each run, as its three columns.
    for row, report in zip(rows, sorted(runs, key=lambda r: r["protocol"]["init"] != "pretrained"), strict=True):
        last = report["diagnostics"]["pseudo_label_study"][-1]
        keys = ("pseudo_label_coverage", "pseudo_label_accuracy", "prediction_accuracy")
        assert row.rstrip(" |").split(" | ")[-3:] == [f"{last[key]:.1f}%" for key in keys]


def test_low_label_gives_the_from_scratch_control_its_candidates_as_overrides():
    overrides = _low_label().scratch_overrides(["{backbone: vgg11_bn}", "{backbone: small_resnet}"], [1, 1.5], 1800)
    assert overrides == [
        "finetune.model=[{backbone: vgg11_bn}, {backbone: small_resnet}]",
        "finetune.steps=[1800,2700]",
    ]
    assert _low_label().scratch_overrides([], [1], 1800) == [], "by default the control is the pretrained architecture"


@pytest.mark.parametrize("scratch", [True, False])
def test_low_label_trains_the_from_scratch_control_unless_told_not_to(monkeypatch, scratch):
    low_label = _low_label()
    trained = []

    def finetune_cell(run, fraction, seed, init, freeze, overrides, semi, reuse):
        trained.append((run.name, seed, init, semi))
        return low_label.Cell(val=80.0, test=79.0)

    def frozen_cells(*args):
        return {row: low_label.Cell(val=70.0, test=69.0) for row in ("pretrained", "random_init", "raw_pixels")}

    monkeypatch.setattr(low_label, "finetune_cell", finetune_cell)
    monkeypatch.setattr(low_label, "probe_cells", frozen_cells)
    monkeypatch.setattr(low_label, "knn_cells", frozen_cells)
    monkeypatch.setattr(low_label, "add_holdout", lambda *args: None)
    runs = {"byol": Path("runs/byol"), "exemplar": Path("runs/exemplar")}
    table, controls = low_label.evaluate(
        runs, 0.01, [0, 1], True, ["byol"], [], ("full",), True, 5, "last", scratch=scratch
    )
    from_scratch = [t for t in trained if t[2] == "random"]
    pretrained = [t for t in trained if t[2] == "pretrained"]
    assert len(pretrained) == 6 and len(table["exemplar"].cells["ft_full"]) == 2, "the encoders' rows either way"
    if scratch:  # one supervised and one FixMatch run per seed, of the first encoder's architecture
        assert from_scratch == [(n, s, "random", m) for s in (0, 1) for n, m in (("byol", None), ("byol", "fixmatch"))]
        assert len(controls["supervised from scratch"].cells["semi"]) == 2
    else:
        assert from_scratch == [] and controls["supervised from scratch"].cells == {}
        assert controls["random init"].cells["gap"], "the free controls stay"


def test_low_label_refuses_candidates_for_a_control_it_will_not_train(tmp_path):
    runs = tmp_path / "runs"
    done = _run("benchmarks/low_label.py", "--smoke", "--runs", str(runs), "--no-scratch", "--scratch-budgets", "2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--no-scratch" in done.stderr, done.stderr
    assert not runs.exists(), "nothing written"


def test_low_label_pick_defers_to_the_best_layer_probe_on_a_tie():
    """The best-layer probe chose among the GAP probe's candidates too; an equal validation score of the GAP
    probe must not overturn that choice."""
    Cell, Scores = _low_label().Cell, _low_label().Scores
    scores = Scores()
    scores.add("gap", Cell(val=90.0, test=80.0, note="l2 0.0001"))
    scores.add("best", Cell(val=90.0, test=85.0, note="layer2, l2 0.0001"))
    scores.add("ft_full", Cell(val=88.0, test=81.0))
    assert [(c.note, c.test) for c in scores.picked()] == [("best-layer probe", 85.0)]
    scores = Scores()
    scores.add("gap", Cell(val=90.0, test=80.0))
    scores.add("best", Cell(val=90.0, test=85.0))
    scores.add("ft_full", Cell(val=91.0, test=81.0))
    assert [c.note for c in scores.picked()] == ["fine-tune"]


def _low_label(module: str = "low_label"):
    """The benchmark script ``low_label`` (or its shared cells, ``low_label_cells``) as a module."""
    sys.path.insert(0, "benchmarks")
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove("benchmarks")


def test_low_label_pick_compares_probes_on_fine_tunings_hold_out_when_they_have_one():
    """A probe's cross-validated score is over every label, fine-tuning's over its hold-out: the pick sets the
    probe's score on that same hold-out against fine-tuning's."""
    low_label = _low_label()
    scores = low_label.Scores()
    scores.add("best", low_label.Cell(val=92.0, test=85.0, holdout=80.0))
    scores.add("ft_full", low_label.Cell(val=85.0, test=83.0))
    assert [(c.note, c.val) for c in scores.picked()] == [("fine-tune", 85.0)]
    scores = low_label.Scores()
    scores.add("best", low_label.Cell(val=80.0, test=85.0, holdout=90.0))
    scores.add("ft_full", low_label.Cell(val=85.0, test=83.0))
    assert [(c.note, c.val) for c in scores.picked()] == [("best-layer probe", 90.0)]


def test_low_label_reuses_only_a_finished_fine_tuning_run_of_the_same_config(tmp_path):
    from ssl_pretrain.config import load_config, save_config

    cells = _low_label("low_label_cells")
    folder = tmp_path / "finetune"
    config = load_config("configs/fashion_mnist/rotation.yaml", ["finetune.lr=0.003", "finetune.name=x-2"])
    for name, lr, finished in (("x-1", 0.003, True), ("x-2", 0.003, True), ("x-3", 0.01, True), ("x-4", 0.003, False)):
        (folder / name).mkdir(parents=True)
        save_config(load_config("configs/fashion_mnist/rotation.yaml", [f"finetune.lr={lr}", f"finetune.name={name}"]),
                    folder / name / "config.yaml")  # fmt: skip
        if finished:
            (folder / name / "finetune.json").write_text("{}")
    assert cells.finished_finetuning(folder, "x", config) == folder / "x-2", "the newest finished match"
    config.finetune.lr = 0.03
    assert cells.finished_finetuning(folder, "x", config) is None
    assert cells.finished_finetuning(folder, "y", load_config("configs/fashion_mnist/rotation.yaml")) is None


def test_low_label_fine_tuning_cell_reads_a_finished_run_instead_of_training(tmp_path):
    from ssl_pretrain.config import load_config, save_config

    low_label, cells = _low_label(), _low_label("low_label_cells")
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config("configs/fashion_mnist/rotation.yaml"), run / "config.yaml")
    done = run / "finetune" / "lowlabel-0.01-s1-random-null-5"
    done.mkdir(parents=True)
    overrides = ["data.label_fraction=0.01", "seed=1", "finetune.init=random", "finetune.freeze_until=null"]
    overrides += [
        f"finetune.steps={cells.FINETUNE_STEPS[0.01]}",
        *cells.FINETUNE_RECIPE,
        *cells.HEAD["random"],
        "finetune.keep=last",
    ]
    save_config(load_config(run / "config.yaml", [f"evaluation.encoder={run}", "trainer.progress=false", *overrides,
                                                  f"finetune.name={done.name}"]), done / "config.yaml")  # fmt: skip
    report = {"val_top1": 90.0, "test_top1": 80.5, "train_seconds": 120.0, "diagnostics": {"note": "not used"}}
    report |= {"selected": {"chosen": {"augment": "strong", "epoch": 75}}, "protocol": {"strategy": "full"}}
    (done / "finetune.json").write_text(json.dumps(report))
    cell = cells.finetune_cell(run, 0.01, 1, "random", "null", ["finetune.keep=last"], reuse=True)
    assert (cell.val, cell.test, cell.minutes, cell.reused) == (90.0, 80.5, 2.0, True)
    assert cell.note == "full, strong, epoch 75" and cell.study == {}, "no pseudo-label study in that run"
    scores = low_label.Scores()
    scores.add("ft_full", cell)
    assert "reused (finished earlier, same config): 1 of 1" in low_label.reused_line({}, {"x": scores})


def test_low_label_semi_method_sets_the_recipe_the_run_name_and_the_column(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ssl_pretrain.config import load_config, save_config

    low_label = _low_label()
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config("configs/fashion_mnist/rotation.yaml"), run / "config.yaml")
    report = {"val_top1": 90.0, "test_top1": 80.5, "train_seconds": 60.0, "diagnostics": {}}
    report |= {"selected": {"chosen": {"augment": "crop_flip", "epoch": 9}}, "protocol": {"strategy": "full"}}
    configs = []  # what each cell would have fine-tuned with

    def record(run, config):
        configs.append(config)
        return SimpleNamespace(to_dict=lambda: report)

    monkeypatch.setattr(_low_label("low_label_cells").ssl, "finetune", record)
    for method in ("fixmatch", "pretext"):
        _low_label("low_label_cells").finetune_cell(run, 0.01, 0, "pretrained", "null", [], semi=method)
    fixmatch, s4l = (c.finetune for c in configs)
    assert fixmatch.unlabeled.method == "fixmatch" and fixmatch.name.startswith("lowlabel-0.01-s0-pretrained-semi-1")
    assert s4l.unlabeled.method == "pretext" and s4l.name.startswith("lowlabel-0.01-s0-pretrained-semi-pretext-")
    assert [t["name"] for t in s4l.unlabeled.options["tasks"]] == ["rotation"]
    assert {(c.unlabeled.options["ratio"], c.augment, c.steps) for c in (fixmatch, s4l)} == {(2.0, "crop_flip", 1800)}
    assert "| fine-tune + unlabeled images (S4L rotation) |" in low_label.fraction_table(0.01, {}, {}, "pretext")
    assert "(FixMatch) |" in low_label.fraction_table(0.01, {}, {})


def test_supervised_ceiling_benchmark_smoke(fashion_mnist_root, tmp_path):
    runs = tmp_path / "runs"
    args = ["benchmarks/supervised_ceiling.py", "--smoke", "--runs", str(runs), "--config", "rotation"]
    done = _run(*args, "--fraction", "0.5", "--seeds", "2", *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    supervised = runs / "rotation" / "supervised-all-labels"
    trained = json.loads((runs / "rotation" / "finetune" / "supervised-all-labels" / "finetune.json").read_text())
    assert trained["protocol"]["init"] == "random" and trained["protocol"]["label_fraction"] == 1.0
    assert (supervised / "encoder.pt").is_file() and (supervised / "probe-labels0.5.json").is_file()
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| encoder")]
    names = [row.split(" | ")[0].lstrip("| ") for row in rows]
    assert names == ["rotation (pretrained, no labels)", "supervised on every label"]
    assert all(row.count("+-") == 2 for row in rows), "mean and spread over the two label seeds, both probes"
    assert "Like with like, supervised minus pretrained: GAP probe " in done.stdout
    (record_file,) = runs.glob("supervised_ceiling-*.json")
    record = json.loads(record_file.read_text())["rows"]
    assert [len(record["supervised on every label"][m]) for m in ("gap", "best")] == [2, 2]


def test_cpu_bf16_benchmark_smoke(fashion_mnist_root, tmp_path):
    data = _tiny_fashion_mnist(fashion_mnist_root)
    done = _run("benchmarks/cpu_bf16.py", "speed", "--smoke", "--configs", "rotation", "--rounds", "1", *data)
    assert done.returncode == 0, done.stderr
    native = "has native bf16" if cpu_has_native_bf16() else "has no native bf16"
    assert f"This CPU {native}" in done.stdout, "the benchmark says which path this CPU takes"
    row = next(line for line in done.stdout.splitlines() if line.startswith("| rotation |"))
    fp32, bf16, ratio = (float(cell.strip(" *x")) for cell in row.split("|")[2:5])
    assert fp32 > 0 and bf16 > 0 and abs(ratio - bf16 / fp32) < 0.01
    runs = tmp_path / "runs"
    done = _run("benchmarks/cpu_bf16.py", "quality", "--smoke", "--seeds", "2", "--runs", str(runs), *data)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| fp")}
    assert set(rows) == {"fp32"} and "| bf16 |" in done.stdout
    metrics = {p: json.loads((runs / f"rotation-{p}" / "metrics.json").read_text()) for p in ("fp32", "bf16")}
    assert metrics["fp32"]["precision"] == "fp32" and metrics["bf16"]["precision"] == "bf16"
    assert "bf16 - fp32:" in done.stdout and "the seeds' spread" in done.stdout


def test_gpu_check_runs_its_path_at_toy_size_on_the_cpu(fashion_mnist_root):
    done = _run("benchmarks/gpu_check.py", "--smoke", "--configs", "rotation", "exemplar", "--", "device=cpu",
                *_tiny_fashion_mnist(fashion_mnist_root))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "**" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["rotation", "exemplar"]
    assert all("| 0 (" in row for row in rows), "no step waits for the device"
    assert "torchrun --nproc_per_node=1 (gloo): 3 steps" in done.stdout and "1%-label GAP probe" in done.stdout
    assert "CUDA tests (`pytest -m cuda`):" in done.stdout


def test_recipe_dev_benchmark_decides_on_the_training_images_only(fashion_mnist_root, tmp_path):
    args = ["benchmarks/recipe_dev.py", "--smoke", "--runs", str(tmp_path), "--config", "rotation"]
    args += ["--held-out", "16", "--fraction", "0.5", *_tiny_fashion_mnist(fashion_mnist_root)]
    models = [
        "{backbone: small_resnet, widths: [8, 16], blocks: [1, 1]}",
        "{backbone: small_resnet, widths: [8], blocks: [1]}",
    ]
    control = ["--scratch-models", *models, "--scratch-budgets", "1", "2"]
    done = _run(*args, "--decisions", "head", "keep", "control", *control)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| head |")]
    assert [(r[1], r[2]) for r in rows] == [(s, h) for s in ("pretrained", "random") for h in HEAD_NAMES]
    assert [r[5] for r in rows].count("**chosen**") == 2, "one head chosen per start"
    keep_lines = [line for line in done.stdout.splitlines() if line.startswith("| keep |")]
    keep = [line.split(" | ") for line in keep_lines]
    assert len(keep) == 7 and all("validation - test" in row[5] for row in keep[:4])
    probe, *picks = keep[4:]
    assert probe[2].startswith("frozen best-layer probe (") and probe[5] == "the pick's other candidate"
    kept = {"best": keep[0], "last": keep[1]}  # the pretrained start's fine-tuning, each kept epoch
    for rule, pick in zip(kept, picks, strict=True):
        assert pick[2] == f"the pick, fine-tuning's {rule} epoch kept"
        other = probe if float(probe[3][:-1]) >= float(kept[rule][3][:-1]) else kept[rule]
        assert pick[3:5] == other[3:5] and pick[5] == ("the probe" if other is probe else "fine-tuning")
    controls = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| control |")]
    assert [(r[1], r[2]) for r in controls] == [("random", f"{m}, {n} steps") for m in models for n in (4, 8)]
    assert [r[5] for r in controls].count("**chosen**") == 1, "the control is from scratch only"
    run = tmp_path / "rotation-dev16"
    assert json.loads((run / "data_split.json").read_text())["pretrain_images"] == 48
    reports = [json.loads(p.read_text()) for p in (run / "finetune").glob("*/finetune.json")]
    assert len(reports) == 10, "two heads and one keep run per start, four control candidates"
    assert all("data.development=16" in r["protocol"]["test_split"] for r in reports), "never the real test set"
    configs = [yaml.safe_load(p.read_text())["finetune"] for p in (run / "finetune").glob("control-*/config.yaml")]
    trained = sorted((c["model"]["widths"], c["steps"]) for c in configs)
    assert trained == [([8], 4), ([8], 8), ([8, 16], 4), ([8, 16], 8)], "each design at each budget, from scratch"
    assert all(c["init"] == "random" for c in configs)
    (record_file,) = tmp_path.glob("recipe_dev-*.json")
    cells = json.loads(record_file.read_text())["cells"]
    assert len(cells) == 13 and {"val_top1", "dev_test_top1", "chosen"} <= set(cells[0])
    assert not any(cell.get("reused") for cell in cells)
    made = sorted(p.name for p in (run / "finetune").iterdir())
    again = _run(*args, "--decisions", "keep")  # an earlier invocation's runs are read, not trained again
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (run / "finetune").iterdir()) == made
    repeated = [line for line in again.stdout.splitlines() if line.startswith("| keep |")]
    reused = [line.replace(" (reused) |", " |") for line in repeated[:4]]
    assert reused == keep_lines[:4], "the reused runs' figures and minutes, as first printed, marked reused"
    assert sum("(reused)" in line for line in repeated[:4]) == 2, "one run per start"
    assert [line.rsplit(" | ", 1)[0] for line in repeated[4:]] == [line.rsplit(" | ", 1)[0] for line in keep_lines[4:]]


HEAD_NAMES = ["flatten, probe-started", "GAP, random"]


def test_ssl_methods_benchmark_ranks_every_checkpoint_on_the_training_images_only(fashion_mnist_root, tmp_path):
    args = ["benchmarks/ssl_methods.py", "--smoke", "--runs", str(tmp_path), "--methods", "vicreg"]
    args += ["--local-crops", "1", "--minutes", "0.01", "--held-out", "16", "--fraction", "0.5"]
    args += [*_tiny_fashion_mnist(fashion_mnist_root), "--recipes", "", "trainer.lr=0.004 task.expander_depth=2"]
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| vicreg |")]
    assert [row[1:3] for row in rows] == [["1", "as shipped"], ["1", "`trainer.lr=0.004 task.expander_depth=2`"]]
    assert sum(row[-1] == "**chosen** |" for row in rows) == 1, "one recipe chosen per method and local crops"
    (record_file,) = tmp_path.glob("ssl_methods-*.json")
    shipped, tuned = json.loads(record_file.read_text())["runs"]
    kept = len(shipped["checkpoints"]) + len(tuned["checkpoints"])
    assert "Spearman's rho" in done.stdout and f"over all {kept} checkpoints" in done.stdout and kept >= 4
    best = max((shipped, tuned), key=lambda r: r["checkpoints"][-1]["probe_dev_test_top1"])
    assert [r["chosen"] for r in (shipped, tuned)] == [r is best for r in (shipped, tuned)]
    for run in (shipped, tuned):
        assert [c["step"] for c in run["checkpoints"]] == sorted(c["step"] for c in run["checkpoints"])
        assert all({"rankme", "probe_dev_test_top1"} <= set(c) for c in run["checkpoints"])
    run_dirs = sorted(tmp_path.glob("vicreg-local1-*steps*"), key=lambda p: len(p.name))
    assert [d.name.endswith("-trainer.lr_0.004_task.expander_depth_2") for d in run_dirs] == [False, True]
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in run_dirs]
    assert [(c["trainer"]["lr"], c["task"]["expander_depth"]) for c in configs] == [(0.002, 3), (0.004, 2)]
    assert json.loads((run_dirs[0] / "data_split.json").read_text())["pretrain_images"] == 48, "never the test set"
    probes = [json.loads(p.read_text()) for d in run_dirs for p in d.glob("**/probe*.json")]
    assert probes and all("data.development=16" in p["protocol"]["test_split"] for p in probes)
    made = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    again = _run(*args)  # every run, calibrations too, found finished
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == made


def test_ssl_methods_benchmark_fixed_steps_skip_the_calibration_and_overrides_reach_pretraining(
    fashion_mnist_root, tmp_path
):
    args = ["benchmarks/ssl_methods.py", "--smoke", "--runs", str(tmp_path), "--methods", "vicreg"]
    args += ["--local-crops", "0", "--held-out", "16", "--fraction", "0.5", "--steps", "6", "seed=3"]
    done = _run(*args, *_tiny_fashion_mnist(fashion_mnist_root))
    assert done.returncode == 0, done.stderr
    assert "for 6 steps (no calibration)" in done.stdout
    assert not any(tmp_path.glob("calibrate-*")) and (tmp_path / "vicreg-local0-6steps").is_dir()
    run = tmp_path / "vicreg-local0-6steps"
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 3
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    (record_file,) = tmp_path.glob("ssl_methods-*.json")
    record = json.loads(record_file.read_text())
    assert (record["steps"], record["minutes"], record["runs"][0]["seconds_per_step"]) == (6, None, None)
    probes = [json.loads(p.read_text()) for p in run.glob("**/probe*.json")]
    assert probes and all(p["protocol"]["seed"] == 0 for p in probes), "the probes keep --seed"
    too_few = _run(*args[:-3], "--steps", "2", *_tiny_fashion_mnist(fashion_mnist_root))
    assert too_few.returncode == 2 and "--steps 2" in too_few.stderr


def test_ssl_methods_benchmark_refuses_a_bad_recipe_in_one_line_before_any_run(fashion_mnist_root, tmp_path):
    args = ["benchmarks/ssl_methods.py", "--smoke", *_tiny_fashion_mnist(fashion_mnist_root)]
    args += ["--runs", str(tmp_path / "runs"), "--methods", "vicreg", "--recipes"]
    for recipe, named in [
        ("trainer.bogus=1", "trainer.bogus: unknown key"),
        ("task.projection_dim=0", "task.projection_dim"),
    ]:
        done = _run(*args, recipe)
        assert done.returncode == 2 and named in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not any((tmp_path / "runs").glob("*")), "no run, not even a calibration, was made"


def test_embedding_use_benchmark_smoke(fashion_mnist_root, tmp_path):
    from ssl_pretrain.cli import main

    data = [f"data.root={fashion_mnist_root}", "data.download=false", "data.development=16"]
    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *TINY, *data, f"output_dir={tmp_path}"]
    assert main([*args, "run_name=rot", "gauges.every=null", "data.limit=40"]) == 0  # not carried to the shards
    done = _run("benchmarks/embedding_use.py", "--smoke", "--runs", str(tmp_path / "rot"), "--held-out", "16",
                f"data.root={fashion_mnist_root}", "data.download=false")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Collection: the first 48 training images" in out and "the test set was not read" in out
    rows = [line.split(" | ")[0].lstrip("| ") for line in out.splitlines() if "% |" in line and "|---" not in line]
    assert {"rot", "random init", "raw pixels"} <= set(rows)
    assert "0.95 (default)" in out, "the default threshold among those measured"
    limit = "MB index.csv (a path and a label a row), run under a 2048 MB memory cgroup"
    assert limit in out or "no memory limit" in out
    assert "after opening the index as `neighbours` does and naming the 10,000 rows found" in out
    missing = _run("benchmarks/embedding_use.py", "--smoke", "--runs", str(tmp_path / "missing"))
    err = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(err) == 1 and "evaluation.encoder" in err[0], missing.stderr
    assert "16 query images written as PNG members of tar shards and embedded from the shards" in out


def test_every_list_of_shipped_configs_is_the_configs_folder():
    """cpu_bf16.py, host_syncs.py and gpu_check.py, and the CUDA tests, cover every shipped Fashion-MNIST config,
    byol and vicreg among them, read from the folder (a config added is covered without editing a list)."""
    sys.path.insert(0, "benchmarks")
    try:
        import cpu_bf16
        import gpu_check
        import host_syncs

        from . import test_cuda
    finally:
        sys.path.remove("benchmarks")
    shipped = sorted(p.stem for p in Path("configs/fashion_mnist").glob("*.yaml"))
    assert {"byol", "vicreg"} <= set(shipped)
    for listed in (cpu_bf16.SHIPPED, host_syncs.SHIPPED, gpu_check.SHIPPED, test_cuda.GREY):
        assert listed == shipped


def test_label_budget_benchmark_smoke(fashion_mnist_root, tmp_path):
    """Every way of choosing a labeled set at two budgets, each evaluated, FixMatch at one from both starts, the
    fixed recipe's settings scored where a class has one label (--diagnostics), the plot written."""
    runs = tmp_path / "runs"
    tiny = [*_tiny_fashion_mnist(fashion_mnist_root), "data.development=16"]
    done = _run("benchmarks/label_budget.py", "--smoke", "--diagnostics", "--runs", str(runs), *tiny)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Frozen probe, test top-1 (%):" in out and "kNN, test top-1 (%):" in out and "FixMatch from" in out
    rows = [
        f"| {s} ({source}) |"
        for s in ("typiclust", "probcover", "kmeans", "kcenter")
        for source in ("encoder", "raw pixels")
    ]
    assert all(row in out for row in ["| random |", "| class-balanced random |", *rows])
    coverage = out.split("Classes covered (of 10):")[1]
    assert "| class-balanced random | 10.00 | 10.00 |" in coverage, "ten classes, one or two images each"
    assert (runs / "label_budget.png").stat().st_size > 10_000
    (record,) = (runs / "label_budget").glob("label_budget-*.json")
    cells = json.loads(record.read_text())["cells"]
    assert {len(c["positions"]) for c in cells["random"]["10"]} == {10}
    fixmatch = [c["scores"] for row in ("random", "typiclust (encoder)") for c in cells[row]["20"]]
    assert all(len(s["fixmatch_pretrained"]) == len(s["fixmatch_random"]) == 1 for s in fixmatch)
    diagnosed = out.split("Too few labels to validate, probe.l2")[1]
    assert re.search(r"\| 10 \| \d+ \| .*\*\*", diagnosed), "the best of the settings marked at 10 labels"
    assert any(set(c.get("candidates", {}).get("knn", {})) == {"5", "10", "20", "50"} for c in cells["random"]["10"])
    not_dev = _run("benchmarks/label_budget.py", "--diagnostics", "--runs", str(runs))
    assert not_dev.returncode == 2 and "give data.development=N" in not_dev.stderr
    seeds = ["--fixmatch-budgets", "60", "100", "--fixmatch-seeds", "3", "2", "1"]
    uneven = _run("benchmarks/label_budget.py", *seeds, "--runs", str(runs))
    assert uneven.returncode == 2 and "--fixmatch-seeds: one value, or one for each" in uneven.stderr


def test_label_budget_merges_earlier_records(tmp_path):
    """--merge adds the rows and budgets a run did not evaluate, never over the ones it did."""
    sys.path.insert(0, "benchmarks")
    try:
        from label_budget import merge
        from label_budget_cells import Cell
    finally:
        sys.path.remove("benchmarks")
    earlier = {"random": {"10": [{"positions": [1], "classes": 1, "scores": {"probe": 40.0}}],
                          "600": [{"positions": [2], "classes": 10, "scores": {"probe": 80.0}}]}}  # fmt: skip
    record = tmp_path / "label_budget-1.json"
    record.write_text(json.dumps({"cells": earlier}))
    cells = {"kmeans (encoder)": {10: [Cell([4], 1)]}, "random": {10: [Cell([3], 1, scores={"probe": 50.0})]}}
    assert merge(cells, [record], [10]) == [10, 600]
    assert list(cells) == ["random", "kmeans (encoder)"], "the draws first, as in a run"
    assert cells["random"][10][0].scores["probe"] == 50.0 and cells["random"][600][0].scores["probe"] == 80.0


def test_select_memory_benchmark_smoke(fashion_mnist_root, tmp_path):
    """Two strategies at two collection sizes, each in its own process: seconds and memory tabled."""
    runs = tmp_path / "runs"
    done = _run("benchmarks/select_memory.py", "--smoke", "--sizes", "32", "64", "--strategies", "probcover",
                "kmeans", "--runs", str(runs), *_tiny_fashion_mnist(fashion_mnist_root))  # fmt: skip
    assert done.returncode == 0, done.stderr
    less = done.stdout.split("The same less the embeddings' own MB:")[1]
    for strategy in ("probcover", "kmeans"):
        assert re.search(rf"\| {strategy} \| -?\d+ \| -?\d+ \|", less), strategy
    (record,) = (runs / "select_memory").glob("select_memory-*.json")
    cells = json.loads(record.read_text())["cells"]
    assert cells["kmeans 64"]["peak_mb"] > cells["kmeans 64"]["imported_mb"] > 100  # torch imported: real figures
    assert len(list((runs / "select_memory" / "embeddings-64" / "selection-probcover-10").glob("*.csv"))) == 2
