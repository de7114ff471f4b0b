"""The Python API, plugins (register_* and entry points), and the custom-task example."""

import json
import pydoc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ssl_pretrain as ssl
from ssl_pretrain.cli import main
from ssl_pretrain.registry import DATASETS, TASKS

from .helpers import TINY, folder_overrides

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_the_api():
    text = pydoc.render_doc(ssl_pretrain_module())
    for name in ("pretrain", "probe", "knn", "finetune", "load_encoder", "load_config", "Run", "register_task"):
        assert name in text, name


def test_the_result_objects_import_from_their_documented_paths():
    from ssl_pretrain.evaluation import reports as old_path
    from ssl_pretrain.evaluation.shared import reports

    for name in ("Report", "FrozenReport", "FinetuneReport", "EnsembleReport", "GradcamReport"):
        assert getattr(old_path, name) is getattr(reports, name), name


def ssl_pretrain_module():
    return ssl


def test_load_config_takes_a_path_a_mapping_or_a_config():
    from_path = ssl.load_config("configs/fashion_mnist/rotation.yaml", ["trainer.lr=1e-3"])
    assert from_path.task.name == "rotation" and from_path.trainer.lr == 0.001
    nested = ssl.load_config({"task": {"name": "rotation"}, "trainer.max_steps": 7}, {"trainer.lr": 0.05})
    assert nested.task.name == "rotation" and nested.trainer.max_steps == 7 and nested.trainer.lr == 0.05
    again = ssl.load_config(nested, ["seed=3"])
    assert again.seed == 3 and again.trainer.max_steps == 7
    with pytest.raises(ssl.ConfigError) as err:
        ssl.load_config({"trainer": {"lr": -1}})
    assert err.value.key == "trainer.lr"


def test_pretrain_probe_knn_finetune_through_the_api(image_folder, tmp_path):
    run = ssl.pretrain("configs/fashion_mnist/rotation.yaml", folder_overrides(image_folder, tmp_path))
    assert run.directory == tmp_path / "run" and run.metrics["steps"] == 3
    assert run.config.task.name == "rotation"
    encoder = run.encoder()
    assert isinstance(encoder, torch.nn.Module) and not encoder.training
    assert encoder(torch.rand(2, 3, 16, 16)).shape == (2, encoder.num_features)
    probe = ssl.probe(run, {"probe.max_iter": 5})
    assert isinstance(probe, ssl.FrozenReport) and probe.results[0]["chosen"]
    assert json.loads((run.directory / "probe.json").read_text()) == json.loads(json.dumps(probe.to_dict()))
    assert probe["selected"] is probe.selected and dict(probe) == probe.to_dict(), "reads as its JSON record"
    assert probe.test_top1() == probe.chosen_rows()["pretrained"]["top1"] == probe.results[0]["top1"]
    knn = ssl.knn(run.directory, ["knn.k=[1,3]"])
    assert knn.setting_keys == ["k"] and knn.selected["pretrained"]["chosen"]["k"] in (1, 3)
    tuned = ssl.finetune(run, {"finetune.epochs": 1, "finetune.batch_size": 8, "finetune.name": "api"})
    assert isinstance(tuned, ssl.FinetuneReport) and 0 <= tuned.test_top1 <= 100
    assert json.loads(Path(tuned.report_file).read_text())["test_top1"] == tuned["test_top1"]
    assert ssl.Run.open(run.directory).metrics == run.metrics
    with pytest.raises(ssl.BadInput, match="evaluation.encoder"):
        ssl.probe(tmp_path / "nowhere", config="configs/fashion_mnist/rotation.yaml")


def _flip_task():
    namespace = {}
    exec((REPO / "examples" / "custom_task.py").read_text().split("def main(")[0], namespace)
    return namespace["FlipPrediction"]


def test_a_registered_task_and_dataset_work_from_a_config(tmp_path):
    flip = _flip_task()
    torch.manual_seed(0)
    images = (torch.rand(48, 1, 12, 12) * 255).to(torch.uint8)
    labels = torch.arange(48) % 3

    def open_split(cfg, split):
        part = slice(0, 36) if split != "test" else slice(36, 48)
        return ssl.TensorImages(images[part], labels[part], f"noise {split}")

    ssl.register_task("flip_test", flip)
    ssl.register_dataset("noise_test", ssl.DatasetSpec(open_split, 1, 12, [0.5], [0.25], description="noise"))
    try:
        with pytest.raises(ssl.BadInput, match="'flip_test' is taken"):
            ssl.register_task("flip_test", flip)
        with pytest.raises(ssl.BadInput, match="'rotation' is taken \\(built in\\)"):
            ssl.register_task("rotation", flip)
        overrides = [*TINY, "task.name=flip_test", "data.name=noise_test", f"output_dir={tmp_path}", "run_name=r"]
        assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *overrides[:-2], *overrides[-2:]]) == 2
        run = ssl.pretrain(None, overrides)  # the rotation file's task options do not fit flip: use the defaults
        assert run.config.task.name == "flip_test" and run.metrics["pretext_accuracy"] >= 0
        assert ssl.probe(run)["protocol"]["train_split"].endswith("36 images")
    finally:
        TASKS.unregister("flip_test")
        DATASETS.unregister("noise_test")


def _install_plugin(tmp_path: Path, body: str) -> Path:
    """A package ``ssl_test_plugin`` with a task entry point, pip-installed into its own target folder."""
    source = tmp_path / "plugin"
    (source / "ssl_test_plugin").mkdir(parents=True)
    (source / "ssl_test_plugin" / "__init__.py").write_text(textwrap.dedent(body))
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "ssl-test-plugin"
            version = "0.0.1"

            [project.entry-points."ssl_pretrain.tasks"]
            flipx = "ssl_test_plugin:FlipX"
            """
        )
    )
    target = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    done = subprocess.run([*command, str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def test_a_pip_installed_plugin_is_found_by_its_entry_point(image_folder, tmp_path):
    example = (REPO / "examples" / "custom_task.py").read_text().split("def main(")[0]
    site = _install_plugin(tmp_path, example + "\nFlipX = FlipPrediction\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    config = tmp_path / "flipx.yaml"
    config.write_text("task:\n  name: flipx\n  head_hidden: 0\n")
    args = ["pretrain", "-c", str(config), *folder_overrides(image_folder, tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "ssl_pretrain", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: flipx" in config and "head_hidden: 0" in config
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "flipx"


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(image_folder, tmp_path):
    site = _install_plugin(tmp_path, "import a_module_that_does_not_exist\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "ssl_pretrain", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert "task plugin 'flipx'" in err[0] and "failed to import" in err[0] and "a_module_that_does_not_exist" in err[0]


def test_the_custom_task_example_runs(fashion_mnist_root):
    args = ["trainer.max_steps=4", f"data.root={fashion_mnist_root}", "data.download=false", "device=cpu"]
    args += ["model.widths=[4,8]", "model.blocks=[1,1]", "trainer.batch_size=16"]
    done = subprocess.run(
        [sys.executable, "examples/custom_task.py", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "flip accuracy" in done.stdout and "linear probe, random_init encoder" in done.stdout
