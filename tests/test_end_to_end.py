"""The whole user path in real processes: pretrain on data in Fashion-MNIST's format, then probe."""

import json
import os
import subprocess
import sys

from .helpers import TINY


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "ssl_pretrain", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_pretrain_then_probe_in_subprocesses(fashion_mnist_root, tmp_path):
    data = [f"data.root={fashion_mnist_root}", "data.download=false", f"output_dir={tmp_path}", "run_name=e2e"]
    done = _cli("pretrain", "-c", "configs/fashion_mnist/dae.yaml", *TINY, *data, "trainer.max_steps=4")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "e2e"
    assert (run / "encoder.pt").is_file()
    # probe.encoder, the contract's spelling of evaluation.encoder, finds the run's config.yaml without -c.
    probed = _cli("probe", f"probe.encoder={run}", "evaluation.control=random_init")
    assert probed.returncode == 0, probed.stderr
    assert "deprecated" not in probed.stderr
    report = json.loads((run / "probe.json").read_text())
    assert report["protocol"]["test_split"].endswith("32 images")
    assert report["protocol"]["train_split"].endswith("64 images")
    assert {r["encoder"] for r in report["results"]} == {"pretrained", "random_init"}


def test_bad_input_in_a_real_process_is_one_line_and_exit_2(tmp_path):
    done = _cli(
        "pretrain", "-c", "configs/fashion_mnist/dae.yaml", "data.root=/nowhere/at/all", f"output_dir={tmp_path}"
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "ssl-pretrain: error: data.root: /nowhere/at/all does not exist"
    assert not any(tmp_path.iterdir())
