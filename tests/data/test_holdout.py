"""A test set pretraining never saw: image folders without data.test_root hold their test files out by path."""

import json

import pytest
import torch
from PIL import Image

from ssl_pretrain.cli import main
from ssl_pretrain.config import DataConfig
from ssl_pretrain.data import image_folder as image_folder_module
from ssl_pretrain.data import open_split, sources
from ssl_pretrain.data.holdout import hash_position, held_out_mask
from ssl_pretrain.errors import BadInput

from ..helpers import folder_overrides


def _names(dataset) -> set[str]:
    return {f.relative_to(dataset.root).as_posix() for f in dataset.files}


def test_splits_are_disjoint_cover_the_folder_and_follow_the_path_rule(image_folder):
    cfg = DataConfig(name="image_folder", root=str(image_folder), image_size=16)
    pretrain, train, test = (open_split(cfg, s) for s in ("pretrain", "train", "test"))
    assert _names(pretrain) == _names(train) and not _names(train) & _names(test)
    assert len(train) + len(test) == 36
    assert all(hash_position(name) < 0.2 for name in _names(test))
    assert all(hash_position(name) >= 0.2 for name in _names(train))
    assert "held-out test files" in test.description
    assert {int(label) for label in test.labels} == {0, 1, 2}  # every class gives some of its files


def test_adding_images_moves_no_existing_file_and_smaller_fractions_nest(image_folder):
    cfg = DataConfig(name="image_folder", root=str(image_folder), image_size=16)
    before = _names(open_split(cfg, "test"))
    for i in range(30):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(image_folder / "class_2" / f"new_{i}.png")
    after = _names(open_split(cfg, "test"))
    assert before <= after and all(name.startswith("class_2/new_") for name in after - before)
    smaller = _names(open_split(DataConfig(name="image_folder", root=str(image_folder), test_fraction=0.1), "test"))
    assert smaller <= after


def test_a_folder_without_classes_is_pretrained_on_whole(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(10):
        Image.new("RGB", (16, 16), (i, i, i)).save(root / f"{i}.png")
    assert len(open_split(DataConfig(name="image_folder", root=str(root)), "pretrain")) == 10


def test_pretraining_never_reads_the_probes_test_files(image_folder, tmp_path, monkeypatch):
    read = []
    decode = sources.decode_image

    def recording_decode(path, size, channels):
        read.append(path)
        return decode(path, size, channels)

    with monkeypatch.context() as patch:
        patch.setattr(sources, "decode_image", recording_decode)  # the images pretraining trains on
        patch.setattr(image_folder_module, "decode_image", recording_decode)  # statistics, readability check
        args = folder_overrides(image_folder, tmp_path) + ["trainer.max_steps=20", "trainer.epochs=5"]
        assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *args]) == 0
    run = tmp_path / "run"
    cfg = DataConfig(name="image_folder", root=str(image_folder), image_size=16)
    test_files = set(open_split(cfg, "test").files)
    assert len(set(read)) == 36 - len(test_files) and not set(read) & test_files, "no test file is ever opened"
    record = json.loads((run / "data_split.json").read_text())
    listed = (run / "held_out_test_files.txt").read_text().split()
    assert sorted(listed) == sorted(f.relative_to(image_folder).as_posix() for f in test_files)
    assert record["held_out_files"] == len(test_files) and record["pretrain_read_test"] is False
    assert main(["probe", f"evaluation.encoder={run}"]) == 0
    protocol = json.loads((run / "probe.json").read_text())["protocol"]
    assert protocol["encoder_saw_test_images"] is False
    # A probe on a larger held-out share tests on files pretraining read, and says so.
    assert main(["probe", f"evaluation.encoder={run}", "data.test_fraction=0.5", "data.label_fraction=0.9"]) == 0
    assert json.loads((run / "probe-labels0.9.json").read_text())["protocol"]["encoder_saw_test_images"] is True


def test_transductive_pretraining_is_opt_in_and_reported(image_folder, tmp_path, capsys):
    args = folder_overrides(image_folder, tmp_path) + ["data.pretrain_on_test=true"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *args]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "data_split.json").read_text())["pretrain_read_test"] is True
    capsys.readouterr()
    assert main(["probe", f"evaluation.encoder={run}"]) == 0
    assert "the encoder saw the test images during pretraining" in capsys.readouterr().out
    assert json.loads((run / "probe.json").read_text())["protocol"]["encoder_saw_test_images"] is True


def test_held_out_mask_matches_the_hash_rule(tmp_path):
    files = [tmp_path / "a" / f"{i}.png" for i in range(200)]
    mask = held_out_mask(files, tmp_path, 0.25)
    assert mask.dtype == torch.bool and 25 < int(mask.sum()) < 75  # about a quarter
    assert mask.tolist() == [hash_position(f"a/{i}.png") < 0.25 for i in range(200)]


def test_shard_statistics_leave_the_held_out_samples_unread(image_folder, tmp_path, monkeypatch):
    from ssl_pretrain.data import shards as shards_module
    from ssl_pretrain.data.builtin import shard_stats

    write_shards = shards_module.write_shards
    paths, _ = write_shards(image_folder, str(tmp_path / "shards" / "train-%06d.tar"), 36)
    decoded = []
    decode = shards_module.decode_sample
    monkeypatch.setattr(shards_module, "decode_sample", lambda s, *a: decoded.append(s["__key__"]) or decode(s, *a))
    cfg = DataConfig(name="shards", root=str(paths[0]), test_fraction=0.3)
    shard_stats(cfg, 3)
    assert decoded and all(hash_position(str(key)) >= 0.3 for key in decoded)
    assert len(decoded) < 36, "some samples are held out at 0.3"
    decoded.clear()
    shard_stats(DataConfig(name="shards", root=str(paths[0]), test_fraction=0.3, test_root=str(tmp_path)), 3)
    assert len(decoded) == 36, "with data.test_root nothing in data.root is held out"


def test_a_development_split_tests_on_the_last_training_images_and_pretraining_never_reads_them(
    fashion_mnist_root, tmp_path
):
    cfg = DataConfig(root=str(fashion_mnist_root), download=False, development=16)
    train, test, pretrain = (open_split(cfg, split) for split in ("train", "test", "pretrain"))
    assert test.origin.tolist() == list(range(48, 64)) and "development" in test.description
    assert train.origin.tolist() == pretrain.origin.tolist() == list(range(48))
    everything = open_split(DataConfig(root=str(fashion_mnist_root), download=False), "train")
    assert torch.equal(test.images, everything.images[48:]), "the test split is training images, not the test set"
    data = [f"data.root={fashion_mnist_root}", "data.download=false", "data.development=16", f"output_dir={tmp_path}"]
    tiny = ["trainer.max_steps=2", "trainer.batch_size=8", "trainer.progress=false", "trainer.precision=fp32"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *data, *tiny, "run_name=dev"]) == 0
    assert json.loads((tmp_path / "dev" / "data_split.json").read_text())["pretrain_images"] == 48
    probe = ["probe", f"evaluation.encoder={tmp_path / 'dev'}", "probe.max_iter=5", "data.development=16"]
    assert main([*probe, f"data.root={fashion_mnist_root}", "data.download=false"]) == 0
    report = json.loads((tmp_path / "dev" / "probe.json").read_text())
    assert report["protocol"]["encoder_saw_test_images"] is False
    assert main([*probe[:-1], "data.development=20", f"data.root={fashion_mnist_root}", "data.download=false"]) == 0
    assert json.loads((tmp_path / "dev" / "probe.json").read_text())["protocol"]["encoder_saw_test_images"] is True
    assert main([*probe[:-1], "data.development=64", f"data.root={fashion_mnist_root}", "data.download=false"]) == 2


def test_a_development_split_refuses_transductive_pretraining_on_a_folder(image_folder):
    """An image folder's pretrain split with ``pretrain_on_test`` holds its test files too, so its first images
    are not the development split's training images: the combination is refused, naming the key."""
    cfg = DataConfig(name="image_folder", root=str(image_folder), development=8, pretrain_on_test=True)
    with pytest.raises(BadInput, match=r"^data\.pretrain_on_test: .*data\.development"):
        open_split(cfg, "pretrain")
