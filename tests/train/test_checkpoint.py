import os

import pytest
import torch

from ssl_pretrain.errors import BadInput
from ssl_pretrain.utils.files import atomic_torch_save, load_checkpoint, safe_torch_load


def test_atomic_save_round_trip_and_no_temp_files(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    atomic_torch_save({"a": torch.arange(3), "step": 4}, path)
    atomic_torch_save({"a": torch.arange(5), "step": 5}, path)
    loaded = safe_torch_load(path)
    assert loaded["step"] == 5 and torch.equal(loaded["a"], torch.arange(5))
    assert os.listdir(path.parent) == ["last.pt"]


def test_a_failed_save_leaves_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"step": 2, "bad": Unsaveable()}, path)
    assert safe_torch_load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/ssl_pretrain_pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit()}, path)
    with pytest.raises(BadInput, match="refused"):
        safe_torch_load(path)
    assert not os.path.exists("/tmp/ssl_pretrain_pwned")


def test_truncated_and_foreign_files_are_bad_input(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"step": 1, "x": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BadInput, match="truncated"):
        load_checkpoint(path)
    atomic_torch_save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(BadInput, match="not an ssl_pretrain training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(BadInput, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_keep_last_keeps_the_newest_step_snapshots(image_folder, tmp_path):
    from ssl_pretrain.cli import main

    from ..helpers import folder_overrides

    args = [
        "pretrain",
        "-c",
        "configs/fashion_mnist/dae.yaml",
        *folder_overrides(image_folder, tmp_path),
        "trainer.max_steps=7",
        "trainer.checkpoint_every=2",
        "trainer.keep_last=2",
    ]
    assert main(args) == 0
    folder = tmp_path / "run" / "checkpoints"
    # saves at steps 2, 4, 6 and the end (7): the two newest snapshots stay, next to last.pt
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "step-00000006.pt", "step-00000007.pt"]
    assert load_checkpoint(folder / "step-00000006.pt")["step"] == 6
    assert load_checkpoint(folder / "step-00000007.pt")["step"] == load_checkpoint(folder / "last.pt")["step"] == 7


def test_keep_last_zero_keeps_only_last(image_folder, tmp_path):
    from ssl_pretrain.cli import main

    from ..helpers import folder_overrides

    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["last.pt"]
