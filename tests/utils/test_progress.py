"""Progress output: a bar on a terminal, plain lines every few seconds in a log (no carriage returns)."""

import io

from tqdm import tqdm

from ssl_pretrain.cli import main
from ssl_pretrain.utils.progress import PlainProgress, progress_bar

from ..helpers import folder_overrides


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_and_a_terminal_gets_a_bar():
    log = io.StringIO()
    bar = progress_bar(10, "pretrain dae", stream=log)
    assert isinstance(bar, PlainProgress)
    bar.interval = 0.0
    bar.update(4)
    bar.set_postfix(loss="0.5")
    bar.update(6)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("pretrain dae: 4/10 steps (40%)") and lines[-1].endswith("loss=0.5")
    assert "\r" not in log.getvalue()
    assert isinstance(progress_bar(10, "x", stream=_Terminal()), tqdm)


def test_a_pretraining_logged_to_a_file_writes_a_few_plain_lines(image_folder, tmp_path, capsys):
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, "trainer.progress=true", "trainer.max_steps=6"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    progress = [line for line in err.splitlines() if line.startswith("pretrain dae: ")]
    assert 1 <= len(progress) <= 3 and progress[-1].startswith("pretrain dae: 6/6 steps (100%)")
