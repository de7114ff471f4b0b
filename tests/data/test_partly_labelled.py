"""Partly labelled collections: ``data.labels`` names the labeled images, every other image is unlabeled."""

import csv
import json
import shutil

import pytest
import torch

from ssl_pretrain.cli import main
from ssl_pretrain.config import load_config
from ssl_pretrain.data import open_split
from ssl_pretrain.data.shards import write_shards
from ssl_pretrain.errors import BadInput

from ..helpers import TINY


def _flat_collection(image_folder, root):
    """The 36 images of ``image_folder`` in one flat folder (no class sub-folders), and a labels file for the
    first 8 of each class, written as Label Studio exports it (``image,choice``)."""
    flat = root / "flat"
    flat.mkdir()
    rows = ["image,choice"]
    for cls in range(3):
        for i in range(12):
            name = f"c{cls}_{i}.png"
            shutil.copy(image_folder / f"class_{cls}" / f"img_{i}.png", flat / name)
            if i < 8:
                rows.append(f"{name},kind {cls}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return flat, root / "labels.csv"


def test_a_flat_folder_with_a_labels_file_splits_into_labeled_unlabeled_and_test(image_folder, tmp_path, capsys):
    flat, labels = _flat_collection(image_folder, tmp_path)
    data = ["data.name=image_folder", f"data.root={flat}", f"data.labels={labels}", "data.image_size=16"]
    data.append("data.test_fraction=0.25")
    cfg = load_config(None, data)
    pretrain, train, pool, test = (open_split(cfg.data, s) for s in ("pretrain", "train", "pool", "test"))
    assert train.has_labels and train.classes == ["kind 0", "kind 1", "kind 2"]
    assert len(train) + len(test) == 24 and len(test) > 0, "the test images are held out of the 24 labeled ones"
    assert len(pool) == len(pretrain) == 36 - len(test), "the unlabeled 12 are in the pool and in pretraining"
    assert int((pool.labels < 0).sum()) == 12
    assert not set(map(str, test.files)) & set(map(str, pool.files))
    # pretrain on every image, then probe and FixMatch on the labeled ones, learning from the unlabeled ones
    args = [*TINY, *data, f"output_dir={tmp_path}", "run_name=run", "gauges.every=null"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *args]) == 0
    assert main(["probe", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert report["protocol"]["train_split"].endswith(f"the {len(train)} labelled by {labels}, {len(train)} images")
    assert report["protocol"]["encoder_saw_test_images"] is False, "pretraining held the labeled test images out"
    finetune = ["finetune.unlabeled=fixmatch", "finetune.epochs=1", "finetune.batch_size=4"]
    assert main(["finetune", str(tmp_path / "run"), *finetune]) == 0
    (done,) = (tmp_path / "run" / "finetune").glob("*/finetune.json")
    pool_text = json.loads(done.read_text())["protocol"]["semi_supervised"]["unlabeled_pool"]
    assert pool_text.endswith(f"labels removed, {len(pool) - 3} images (validation split excluded)"), "1 per class"


def test_a_built_in_dataset_takes_positions_with_or_without_labels(fashion_mnist_root, tmp_path):
    (tmp_path / "picks.csv").write_text("index\n3\n5\n40\n")
    data = [f"data.root={fashion_mnist_root}", "data.download=false"]
    cfg = load_config(None, [*data, f"data.labels={tmp_path / 'picks.csv'}"])
    full = open_split(load_config(None, data).data, "train")
    train = open_split(cfg.data, "train")
    assert train.origin.tolist() == [3, 5, 40] and train.labels.tolist() == full.labels[[3, 5, 40]].tolist()
    (tmp_path / "given.csv").write_text("index,label\n3,7\n")
    given = open_split(load_config(None, [*data, f"data.labels={tmp_path / 'given.csv'}"]).data, "train")
    assert given.labels.tolist() == [7]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("path,label\nc0_0.png,a\nc0_0.png,b\n", "row 3: c0_0.png is labelled twice"),
        ("path,label\nc0_0.png,\n", "row 2: c0_0.png has an empty label"),
        ("path,label\nnowhere.png,a\n", "row 2: nowhere.png is not an image file in"),
        ("name,what\nc0_0.png,a\n", "needs a header with path,label"),
    ],
)
def test_a_bad_labels_row_is_one_line_naming_it_and_nothing_is_written(image_folder, tmp_path, capsys, rows, message):
    flat, _ = _flat_collection(image_folder, tmp_path)
    (tmp_path / "bad.csv").write_text(rows)
    args = [*TINY, "data.name=image_folder", f"data.root={flat}", f"data.labels={tmp_path / 'bad.csv'}"]
    args += ["data.image_size=16", f"output_dir={tmp_path / 'runs'}", "run_name=run"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.labels:" in err and message in err, err
    assert not (tmp_path / "runs").exists()


def test_partly_labelled_shards_split_by_key_and_select_names_the_picks_by_key(image_folder, tmp_path, capsys):
    """A flat collection written as shards (no ``cls``) with a ``key,label`` file: the labeled samples, the
    unlabeled pool and the held-out test split agree by position; ``select`` names its picks by key and its
    filled-in template is read back as ``data.labels``."""
    flat, _ = _flat_collection(image_folder, tmp_path)
    assert main(["shard", str(flat), str(tmp_path / "shards" / "part-%06d.tar"), "--per-shard", "10"]) == 0
    keys = [f"c{cls}_{i}" for cls in range(3) for i in range(8)]
    (tmp_path / "keys.csv").write_text("key,label\n" + "".join(f"{k},kind {k[1]}\n" for k in keys))
    data = ["data.name=shards", f"data.root={tmp_path / 'shards'}", f"data.labels={tmp_path / 'keys.csv'}"]
    data += ["data.image_size=16", "data.test_fraction=0.25"]
    cfg = load_config(None, data)
    pretrain, train, pool, test = (open_split(cfg.data, s) for s in ("pretrain", "train", "pool", "test"))
    assert len(train) + len(test) == 24 and len(test) > 0 and len(pool) == len(pretrain) == 36 - len(test)
    assert sorted(set(train.labels.tolist())) == [0, 1, 2] and int((pool.labels < 0).sum()) == 12
    slot = {int(p): i for i, p in enumerate(pool.origin.tolist())}
    assert torch.equal(pool.images[[slot[int(p)] for p in train.origin]], train.images), "positions agree"
    assert torch.equal(pool.labels[[slot[int(p)] for p in train.origin]], train.labels)
    args = [*TINY, *data, f"output_dir={tmp_path}", "run_name=run", "gauges.every=null", "trainer.batch_size=4"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *args]) == 0
    record = json.loads((tmp_path / "run" / "data_split.json").read_text())
    assert record["held_out_rule"].endswith("among the keys data.labels names") and record["labels_sha256"]
    assert main(["probe", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "probe.json").read_text())["protocol"]["encoder_saw_test_images"] is False
    assert main(["select", str(tmp_path / "run"), "select.budget=3", "select.strategy=kmeans"]) == 0
    assert "3 images chosen by kmeans" in capsys.readouterr().out
    (out,) = (tmp_path / "run" / "embeddings").glob("*/selection-kmeans-3")
    picked = [row["key"] for row in csv.DictReader((out / "selection.csv").open())]
    index = {r["path"].rsplit(":", 1)[1]: r["label"] for r in csv.DictReader((out.parent / "index.csv").open())}
    assert len(index) == 36 and index["c2_0"] == "2" and index["c2_11"] == "", "the file's labels, by key"
    assert len(picked) == 3 and set(picked) <= {f"c{c}_{i}" for c in range(3) for i in range(12)}, picked
    filled = (out / "labels.csv").read_text().replace(",\n", ",kind 0\n")
    assert filled.startswith("key,label\n")
    (tmp_path / "filled.csv").write_text(filled)
    more = load_config(None, [*data[:2], f"data.labels={tmp_path / 'filled.csv'}", *data[3:]])
    read_back = len(open_split(more.data, "train")) + len(open_split(more.data, "test"))
    assert read_back == 24 + 3, "the run's 24 labeled samples, then the picks, read back as labeled"
    (tmp_path / "bad.csv").write_text("key,label\nc0_0,a\nnowhere,b\n")
    bad = [*args[:-3], f"data.labels={tmp_path / 'bad.csv'}", f"output_dir={tmp_path / 'bad'}"]
    capsys.readouterr()
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 3: nowhere is not a sample key of the shards" in err, err
    assert not (tmp_path / "bad").exists()


def test_shard_labels_are_class_numbers_or_sorted_names_and_an_empty_test_split_is_named(image_folder, tmp_path):
    paths, _ = write_shards(image_folder, str(tmp_path / "shards" / "part-%06d.tar"), 12)
    keys = [f"class_{c}/img_{i}" for c in range(3) for i in range(4)]
    data = ["data.name=shards", f"data.root={tmp_path / 'shards'}", "data.image_size=16", "data.test_fraction=0.3"]
    for name, labels, expected in (("numbers", ["7", "2", "12"], [7, 2, 12]), ("names", ["b", "a", "c"], [1, 0, 2])):
        rows = [f"{k},{labels[int(k[6])]}\n" for k in keys]
        (tmp_path / f"{name}.csv").write_text("key,label\n" + "".join(rows))
        cfg = load_config(None, [*data, f"data.labels={tmp_path / f'{name}.csv'}"]).data
        train, test = open_split(cfg, "train"), open_split(cfg, "test")
        assert len(train) + len(test) == 12 and len(test) > 0
        got = torch.cat([train.labels, test.labels])
        assert sorted(got.tolist()) == sorted(e for e in expected for _ in range(4)), "the file's, not the cls"
    cfg = load_config(None, [*data, f"data.labels={tmp_path / 'names.csv'}", "data.test_fraction=0.001"]).data
    with pytest.raises(BadInput, match="data.test_fraction: 0.001 leaves no test sample among the 12 keys"):
        open_split(cfg, "test")
