import numpy as np
import pytest
import torch
from PIL import Image

from ssl_pretrain.config import DataConfig
from ssl_pretrain.data import EpochBatchSampler, data_info, open_split, to_device_float
from ssl_pretrain.data.idx import read_idx, write_idx
from ssl_pretrain.data.sources import decode_image
from ssl_pretrain.errors import BadInput


def test_idx_round_trip_plain_and_gzip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(read_idx(tmp_path / name), array)


def test_truncated_idx_is_bad_input(tmp_path):
    write_idx(tmp_path / "t", np.zeros((4, 4, 4), dtype=np.uint8))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-5])
    with pytest.raises(BadInput, match="truncated"):
        read_idx(tmp_path / "t")


def test_fashion_mnist_from_data_root(fashion_mnist_root):
    cfg = DataConfig(root=str(fashion_mnist_root), download=False)
    train, test = open_split(cfg, "train"), open_split(cfg, "test")
    assert len(train) == 64 and len(test) == 32
    batch = train.__getitems__([0, 5])
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (2, 1, 28, 28)
    assert batch.labels.tolist() == [0, 5]
    limited = open_split(DataConfig(root=str(fashion_mnist_root), limit=10, download=False), "pretrain")
    assert len(limited) == 10


def test_fashion_mnist_torchvision_layout(fashion_mnist_root, tmp_path):
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in fashion_mnist_root.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    assert len(open_split(DataConfig(root=str(tmp_path / "tv"), download=False), "test")) == 32


def test_missing_data_root_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="data.root: .* does not exist"):
        open_split(DataConfig(root=str(tmp_path / "nope")), "pretrain")


def test_image_folder_is_recursive_with_labels_from_subfolders(image_folder):
    nested = image_folder / "class_1" / "deeper"
    nested.mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(nested / "extra.jpg")
    cfg = DataConfig(name="image_folder", root=str(image_folder), image_size=16, pretrain_on_test=True)
    ds = open_split(cfg, "pretrain")
    assert len(ds) == 37 and ds.classes == ["class_0", "class_1", "class_2"]
    assert ds.has_labels
    batch = ds.__getitems__(list(range(len(ds))))
    assert batch.images.shape == (37, 3, 16, 16) and batch.images.dtype == torch.uint8
    assert sorted(set(batch.labels.tolist())) == [0, 1, 2]


def test_broken_files_are_skipped_and_reported(image_folder):
    (image_folder / "class_0" / "empty.png").write_bytes(b"")
    (image_folder / "class_0" / "text.jpg").write_text("not an image")
    good = (image_folder / "class_1" / "img_0.png").read_bytes()
    (image_folder / "class_1" / "truncated.png").write_bytes(good[: len(good) // 2])
    cfg = DataConfig(name="image_folder", root=str(image_folder), image_size=16, pretrain_on_test=True)
    ds = open_split(cfg, "pretrain")
    batch = ds.__getitems__(list(range(len(ds))))
    assert len(batch.images) == 36
    assert sorted(p.split("/")[-1] for p in batch.skipped) == ["empty.png", "text.jpg", "truncated.png"]


def test_grey_palette_alpha_and_16_bit_images_are_converted(tmp_path):
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("P", (8, 8)).save(tmp_path / "palette.png")
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "alpha.png")
    Image.new("L", (8, 8), 7).save(tmp_path / "grey.png")
    for name in ("deep.png", "palette.png", "alpha.png", "grey.png"):
        assert decode_image(tmp_path / name, 8, 3).shape == (3, 8, 8)
        assert decode_image(tmp_path / name, 8, 1).shape == (1, 8, 8)
    assert decode_image(tmp_path / "alpha.png", 8, 1).min() == 255, "transparent pixels on white"


def test_empty_folder_is_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(BadInput, match="no image files"):
        open_split(DataConfig(name="image_folder", root=str(tmp_path / "empty")), "pretrain")


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochBatchSampler(50, 8, seed=3), EpochBatchSampler(50, 8, seed=3)
    assert list(a) == list(b) and len(list(a)) == 6
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0, start_batch=2)
    assert list(a) == first[2:]
    assert EpochBatchSampler(5, 8, seed=0).batch_size == 5
    assert len(list(EpochBatchSampler(10, 4, 0, shuffle=False, drop_last=False))) == 3


def test_conversion_on_device_to_float_with_resize_and_channels():
    from ssl_pretrain.data import DataInfo

    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    x = to_device_float(images, DataInfo(3, 32, [0.5] * 3, [0.25] * 3), torch.device("cpu"))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    same = to_device_float(images, DataInfo(1, 28, [0.5], [0.25]), torch.device("cpu"))
    assert torch.equal(same, images.float() / 255)


def test_data_info_uses_dataset_statistics():
    assert data_info(DataConfig()).mean == [0.286]
    assert data_info(DataConfig(channels=3)).channels == 3
    assert data_info(DataConfig(name="cifar10")).image_size == 32


def test_loader_workers_auto_decodes_files_in_workers_and_memory_in_the_main_process(image_folder):
    import os

    from ssl_pretrain.data.loader import dataset_on_host, loader_workers, on_device
    from ssl_pretrain.data.sources import TensorImages

    in_memory = TensorImages(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), None, "x")
    files = open_split(DataConfig(name="image_folder", root=str(image_folder), pretrain_on_test=True), "pretrain")
    assert loader_workers("auto", in_memory) == 0 and loader_workers(3, in_memory) == 3
    assert loader_workers("auto", files) == min(8, max(1, (os.cpu_count() or 2) // 2))
    assert loader_workers("auto", files, local_processes=64) == 1, "torchrun's processes share the cores"
    assert on_device(in_memory, torch.device("cpu")) is in_memory and dataset_on_host(in_memory)
    assert DataConfig().num_workers == "auto"


def test_a_short_batch_is_filled_to_a_fixed_shape_from_its_own_images():
    from ssl_pretrain.data.loader import full_batch
    from ssl_pretrain.data.sources import Batch

    def batch(n: int, first: int = 0) -> Batch:
        images = torch.arange(first, first + n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2)
        return Batch(images, torch.arange(first, first + n), torch.arange(first, first + n) + 100, [f"bad{n}"])

    full = batch(4)
    assert full_batch(full, 4, None) is full
    short = full_batch(batch(3, first=10), 5, full)
    assert short.images[:, 0, 0, 0].tolist() == [10, 11, 12, 10, 11] and short.labels.tolist() == [10, 11, 12, 10, 11]
    assert short.indices.tolist() == [110, 111, 112, 110, 111] and short.skipped == ["bad3"]
    empty = full_batch(batch(0), 4, full)
    assert empty.indices.tolist() == full.indices.tolist() and empty.skipped == ["bad0"], "the previous batch again"
    first = full_batch(batch(0), 3, None)
    assert first.images.shape == (3, 1, 2, 2) and not first.images.any() and first.labels.tolist() == [-1, -1, -1]
