"""WebDataset tar shards: writing them from a folder, streaming them split across processes and workers,
exact resume, broken members, and pretraining on them (in one process and under torchrun)."""

import gzip
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_pretrain.cli import main
from ssl_pretrain.data import shards as shard_module
from ssl_pretrain.data.shard_stream import ShardSource, ShardStream, stream_loader
from ssl_pretrain.data.shards import members, shard_paths, survey, write_shards
from ssl_pretrain.errors import BadInput

from ..helpers import TINY
from ..processes import run_cli


@pytest.fixture
def shards(image_folder, tmp_path):
    """The 36 images of ``image_folder`` as 12 shards of 3."""
    paths, classes = write_shards(image_folder, str(tmp_path / "shards" / "train-%06d.tar"), 3)
    assert len(paths) == 12 and classes == ["class_0", "class_1", "class_2"]
    return paths


def _stream(paths, **kwargs) -> ShardStream:
    counts, digests = survey(paths)
    return ShardStream(paths, counts, 3, seed=0, size=16, channels=3, digests=digests, **kwargs)


def test_shards_written_from_a_folder_keep_images_labels_and_keys(shards, image_folder):
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert len(names) == 6 and set(names[:2]) == {"class_0/img_0.png", "class_0/img_0.cls"}
    with tarfile.open(shards[0]) as tar:
        original = (image_folder / "class_0" / "img_0.png").read_bytes()
        assert tar.extractfile("class_0/img_0.png").read() == original, "image bytes copied as they are"
    assert survey(shards)[0] == [3] * 12


def test_shards_are_named_by_pattern_list_or_folder_and_a_missing_one_is_named(shards, tmp_path):
    folder = shards[0].parent
    assert shard_paths(str(folder / "train-{000000..000011}.tar")) == shards
    assert shard_paths([str(shards[1]), str(shards[0])]) == [shards[1], shards[0]]
    assert shard_paths(str(folder)) == shards
    with pytest.raises(BadInput, match="data.root: shard .*train-000012.tar does not exist"):
        shard_paths(str(folder / "train-{000000..000012}.tar"))


@pytest.mark.parametrize("workers", [0, 2])
def test_two_processes_with_two_workers_read_every_sample_once_an_epoch(shards, workers):
    for epoch in (0, 1):
        seen = []
        for rank in range(2):
            stream = _stream(shards, rank=rank, world_size=2, num_workers=2)
            stream.set_epoch(epoch)
            loader = DataLoader(stream, batch_size=None, num_workers=workers)
            batches = list(loader)
            assert len(batches) == len(stream) == 2 * 3  # 2 workers x 3 shards of 3 samples, batches of 3
            seen += [int(i) for b in batches for i in b.indices]
        assert sorted(seen) == list(range(36)), "every sample once, none skipped"
        assert stream.dropped(epoch) == 36 - len(seen) == 0


def test_epochs_reshuffle_and_resume_continues_at_the_batch(shards):
    stream = _stream(shards, num_workers=2)
    first = [b.indices.tolist() for b in stream]
    stream.set_epoch(1)
    second = [b.indices.tolist() for b in stream]
    assert first != second and sorted(sum(first, [])) == sorted(sum(second, []))
    stream.set_epoch(1, start_batch=5)
    resumed = [b.indices.tolist() for b in stream]
    assert resumed == second[5:]
    assert all(torch.equal(a.images, b.images) for a, b in zip(list(stream), [b for b in stream], strict=True))


def test_workers_started_once_serve_each_epoch_the_trainer_sets(shards):
    """The loader's workers outlive an epoch: each epoch (and a resume position) set after they started
    reaches them, and gives the batches a fresh stream would."""
    stream = _stream(shards, num_workers=2)
    loader = stream_loader(stream, num_workers=2, pin_memory=False)
    served, workers = [], []
    for epoch, start in ((0, 0), (1, 0), (2, 3)):
        stream.set_epoch(epoch, start)
        served.append([b.indices.tolist() for b in loader])
        workers.append({w.pid for w in loader._iterator._workers})
    assert len(workers[0]) == 2 and workers[0] == workers[1] == workers[2], "the same two processes throughout"
    for (epoch, start), batches in zip(((0, 0), (1, 0), (2, 3)), served, strict=True):
        fresh = _stream(shards, num_workers=2)
        fresh.set_epoch(epoch, start)
        assert batches == [b.indices.tolist() for b in fresh]
    assert served[0] != served[1]


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_broken_members_are_skipped_and_counted_and_a_broken_shard_is_named(tmp_path, capsys):
    good = {f"{i:03d}.png": _png(i * 20) for i in range(10)}
    broken = {"900.png": _png(1)[:40], "901.jpg": b"this is not a picture", "902.webp": b"<html>404</html>"}
    _tar(tmp_path / "a.tar", {**good, **broken})
    args = [*TINY, "data.name=shards", f"data.root={tmp_path / 'a.tar'}", "data.image_size=16", "trainer.batch_size=13"]
    args += [f"output_dir={tmp_path}", "run_name=run", "trainer.max_steps=2", "trainer.epochs=2"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 2 * 3 and metrics["images_seen"] == 2 * 10
    assert "skipped 3 unreadable image file(s)" in capsys.readouterr().err
    (tmp_path / "bad.tar").write_bytes(b"not a tar file at all" * 100)
    bad = [a if not a.startswith("data.root") else f"data.root={tmp_path / 'bad.tar'}" for a in args]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *bad[:-3], "run_name=bad"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.tar cannot be read" in err[0]


def test_shard_command_then_pretrain_probe_and_torchrun_on_the_shards(image_folder, tmp_path, capsys):
    pattern = str(tmp_path / "out" / "part-%06d.tar")
    assert main(["shard", str(image_folder), pattern, "--per-shard", "4"]) == 0
    out = capsys.readouterr().out
    brace = str(tmp_path / "out" / "part-{000000..000008}.tar")
    assert "9 shard(s) written" in out and f"data.root='{brace}'" in out
    common = [*TINY, "data.name=shards", f"data.root={brace}", "data.image_size=16", f"output_dir={tmp_path}"]
    common += ["trainer.batch_size=2", "data.num_workers=2", "trainer.max_steps=100"]
    assert main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *common, "run_name=one"]) == 0
    record = json.loads((tmp_path / "one" / "data_split.json").read_text())
    assert record["held_out_fraction"] == 0.2 and record["pretrain_read_test"] is False
    assert main(["probe", f"evaluation.encoder={tmp_path / 'one'}"]) == 0
    report = json.loads((tmp_path / "one" / "probe.json").read_text())
    assert report["protocol"]["encoder_saw_test_images"] is False
    assert report["protocol"]["test_split"].startswith(f"shards {brace}, held-out samples")
    ddp = run_cli(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *common, "run_name=two"], nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(set(metrics["weights_sha256_per_rank"])) == 1


def test_a_run_on_shards_resumed_inside_an_epoch_ends_as_an_unbroken_one(shards, tmp_path, monkeypatch):
    from ssl_pretrain.utils.files import safe_torch_load

    from ..helpers import interrupt_after_checkpoint

    brace = str(shards[0].parent / "train-{000000..000011}.tar")
    common = [*TINY, "data.name=shards", f"data.root={brace}", "data.image_size=16", f"output_dir={tmp_path}"]
    common += ["trainer.batch_size=3", "data.num_workers=2", "trainer.max_steps=9", "trainer.checkpoint_every=3"]
    common += ["data.pretrain_on_test=true", "trainer.epochs=5"]  # 12 batches an epoch: step 9 is inside epoch 1
    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *common]
    assert main([*args, "run_name=straight"]) == 0
    interrupt_after_checkpoint(monkeypatch, 3)
    assert main([*args, "run_name=resumed"]) == 130
    monkeypatch.undo()
    assert main([*args, "run_name=resumed", "--resume"]) == 0
    straight = safe_torch_load(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    resumed = safe_torch_load(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(value, resumed[key]) for key, value in straight.items())


def test_the_pretraining_split_reads_in_order_from_any_position_and_by_position(shards):
    """What ``embed`` reads: the split in shard order from a position (a restart), named ``<shard>:<key>``,
    the same with loader workers decoding every other batch; and any positions (repeats allowed) in the order
    asked, decoded as the in-order pass decodes them."""
    source = ShardSource(shards, 16, 3, held_out=None, labeled=True, description="shards")
    whole = list(source.in_order(0, 5, num_workers=0))
    assert [len(b.indices) for b, _ in whole] == [5] * 7 + [1]
    assert torch.cat([b.indices for b, _ in whole]).tolist() == list(range(36))
    assert whole[0][1][:2] == [f"{shards[0]}:class_0/img_0", f"{shards[0]}:class_0/img_1"]
    images = torch.cat([b.images for b, _ in whole])
    later = list(source.in_order(10, 5, num_workers=2))
    assert torch.cat([b.indices for b, _ in later]).tolist() == list(range(10, 36)), "in order across workers"
    assert torch.equal(torch.cat([b.images for b, _ in later]), images[10:])
    assert [n for _, names in later for n in names] == [n for _, names in whole for n in names][10:]
    picked = source.__getitems__([30, 2, 30, 17])
    assert picked.indices.tolist() == [30, 2, 30, 17] and torch.equal(picked.images, images[[30, 2, 30, 17]])


def test_members_are_read_at_the_offsets_of_wids_index_as_the_streamed_reading_gives_them(shards, monkeypatch):
    """With survey()'s digests every member comes through wids' index of the memory-mapped shard (the
    streaming tar parser is never called), and every batch equals the streamed reading's."""
    counts, _ = survey(shards)
    streamed = list(ShardStream(shards, counts, 3, seed=0, size=16, channels=3, num_workers=2))

    def refuse(stream):
        raise AssertionError(f"{stream} parsed as a stream")

    monkeypatch.setattr(shard_module.webdataset().tariterators, "tar_file_iterator", refuse)
    indexed = list(_stream(shards, num_workers=2))
    assert len(indexed) == len(streamed) == 12
    for a, b in zip(indexed, streamed, strict=True):
        assert a.indices.tolist() == b.indices.tolist() and a.labels.tolist() == b.labels.tolist()
        assert torch.equal(a.images, b.images)


def test_a_shard_whose_headers_the_index_cannot_read_is_streamed(tmp_path, monkeypatch):
    """A name longer than a tar header holds goes into a pax header, which wids' index skips (it would list
    the truncated name): the digests differ and the shard is streamed, with its whole keys. Compressed
    shards, and every shard without wids, are streamed too."""
    long = "class_0/" + "x" * 120
    _tar(tmp_path / "long.tar", {f"{long}.png": _png(10), f"{long}.cls": b"0", "short.png": _png(20)})
    _tar(tmp_path / "plain.tar", {"a.png": _png(10), "a.cls": b"0", "b.png": _png(20)})
    (long_digest, plain_digest) = survey([tmp_path / "long.tar", tmp_path / "plain.tar"])[1]
    assert shard_module._index(tmp_path / "long.tar", long_digest) is None
    assert [s["__key__"] for s in members(tmp_path / "long.tar", long_digest)] == [long, "short"]
    index = shard_module._index(tmp_path / "plain.tar", plain_digest)
    assert index is not None and len(index) == 3
    index.close()
    with gzip.open(tmp_path / "plain.tar.gz", "wb") as packed:
        packed.write((tmp_path / "plain.tar").read_bytes())
    counts, digests = survey([tmp_path / "plain.tar.gz"])
    assert counts == [2] and digests == [None], "a compressed shard has no offsets to read at: streamed"
    assert [s["__key__"] for s in members(tmp_path / "plain.tar.gz", digests[0])] == ["a", "b"]
    monkeypatch.setattr(shard_module, "_indexed_reader", lambda: None)
    assert shard_module._index(tmp_path / "plain.tar", plain_digest) is None
    assert [s["__key__"] for s in members(tmp_path / "plain.tar", plain_digest)] == ["a", "b"]


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    pattern = (np.arange(24 * 24 * 3).reshape(24, 24, 3) * (value + 1)) % 251
    Image.fromarray(pattern.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_jpegs_left_encoded_decode_on_the_device_into_the_same_batches(tmp_path):
    """data.decode=gpu's path, run on the CPU: the workers pass JPEGs on undecoded (other images decoded),
    the device decodes them in one call; images, labels and indices match the workers' own decoding."""
    from ssl_pretrain.data.loader import decode_on_device

    members = {}
    for i in range(12):
        members[f"{i:03d}.jpg" if i % 3 else f"{i:03d}.png"] = _jpeg(i) if i % 3 else _png(i * 20)
        members[f"{i:03d}.cls"] = str(i % 2).encode()
    members["900.jpg"] = _jpeg(1)[:300]  # truncated: the device decoder fails it, it is skipped and named
    _tar(tmp_path / "a.tar", members)
    paths = [tmp_path / "a.tar"]
    plain = list(ShardStream(paths, survey(paths)[0], 13, seed=0, size=16, channels=3))
    encoded = list(ShardStream(paths, survey(paths)[0], 13, seed=0, size=16, channels=3, encoded=True))
    assert [len(b.encoded) for b in encoded] == [9] and len(encoded[0].images) == 4, "JPEGs left, PNGs decoded"
    on_device = decode_on_device(encoded[0], torch.device("cpu"))
    assert not on_device.encoded and on_device.skipped == [f"900 ({paths[0]})"] == plain[0].skipped
    first = plain[0]
    by_index = {int(i): (im, int(lab)) for im, lab, i in zip(first.images, first.labels, first.indices, strict=True)}
    assert sorted(on_device.indices.tolist()) == sorted(by_index)
    for image, label, index in zip(on_device.images, on_device.labels, on_device.indices, strict=True):
        assert torch.equal(image, by_index[int(index)][0]) and int(label) == by_index[int(index)][1]


def test_data_decode_gpu_is_refused_where_it_cannot_run(shards, image_folder):
    from ssl_pretrain.data import open_split
    from ssl_pretrain.data.loader import decodes_on_device
    from ssl_pretrain.data.shard_stream import ShardSource

    stream = ShardSource(shards, 16, 3, None, True, "shards")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert decodes_on_device("auto", cuda, stream) and not decodes_on_device("auto", cpu, stream)
    assert not decodes_on_device("cpu", cuda, stream) and decodes_on_device("gpu", cuda, stream)
    with pytest.raises(BadInput, match="data.decode: gpu decodes on a CUDA device; this run's device is cpu"):
        decodes_on_device("gpu", cpu, stream)
    from ssl_pretrain.config import load_config

    folder = open_split(load_config(None, ["data.name=image_folder", f"data.root={image_folder}"]).data, "pretrain")
    assert not decodes_on_device("auto", cuda, folder)
    with pytest.raises(BadInput, match="data.decode: gpu applies to data.name=shards"):
        decodes_on_device("gpu", cuda, folder)
