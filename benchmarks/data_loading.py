"""Data loading: images/s decoded and delivered to the device, image folder against tar shards, against the
model's own step rate.

    python benchmarks/data_loading.py [--images 4096] [--sizes 32 96] [--workers 0 1 2] [--cache warm cold]
                                      [--smoke]

Makes JPEGs (textured, class-dependent, so they compress like photographs) in class folders at each size,
writes the same files as shards (``ssl-pretrain shard``), then times one pass of each pretraining loader
(``data.name=image_folder`` and ``data.name=shards``, the framework's own loaders) including the uint8 ->
float conversion on the device. ``warm``: the files are in the page cache (a collection smaller than the
memory, read before). ``cold``: the page cache is dropped before each pass, so every byte comes from the
disk, as it does for a collection larger than the memory or on first read (Linux, as root; directory and
inode caches are kept, so the folder's file lookups stay as cheap as when warm).

The model side: images/s of the training step of every shipped Fashion-MNIST config, timed with the
trainer's own step (BareStep) on random images. A config is limited by the loader when the slowest loader
measured with the most workers (at the smallest size) delivers fewer images/s than its step consumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import BareStep, report, run_main, sync  # noqa: E402

from ssl_pretrain.build import resolve_device  # noqa: E402
from ssl_pretrain.config import load_config  # noqa: E402
from ssl_pretrain.data import data_info, open_split, to_device_float  # noqa: E402
from ssl_pretrain.data.loader import pretraining_batches  # noqa: E402
from ssl_pretrain.data.shards import write_shards  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
SHIPPED = ["exemplar", "rotation", "relative_patch", "dae", "multi"]


def make_jpegs(root: Path, count: int, size: int, classes: int = 10) -> None:
    """``count`` JPEGs of ``size`` px in ``classes`` sub-folders."""
    rng = np.random.default_rng(size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        cls = i % classes
        folder = root / f"class_{cls}"
        folder.mkdir(parents=True, exist_ok=True)
        pattern = np.sin((xx * (cls + 1) + yy * rng.uniform(1, 4)) * 6.28) * 60 + 128
        image = np.stack([pattern + rng.normal(0, 25, (size, size)) for _ in range(3)], axis=2)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_page_cache() -> None:
    """Write dirty pages back and drop the page cache (file contents; dentries and inodes stay): Linux, root."""
    os.sync()
    DROP_CACHES.write_text("1\n")


def loader_rate(data: list[str], workers: int, device: torch.device, batch: int, cold: bool = False) -> float:
    """Images/s of one pass of the pretraining loader, delivered to ``device`` as float images; ``cold``:
    the page cache dropped first."""
    config = load_config(None, [*data, f"data.num_workers={workers}", "data.pretrain_on_test=true"])
    info = data_info(config.data)
    dataset = open_split(config.data, "pretrain")
    loader, sampler = pretraining_batches(dataset, batch, 0, 0, 1, workers, device.type == "cuda")
    sampler.set_epoch(0)
    if cold:
        drop_page_cache()
    count, start = 0, time.perf_counter()
    for b in loader:
        count += len(to_device_float(b.images, info, device))
    sync(device)
    return count / (time.perf_counter() - start)


def model_rate(name: str, device: torch.device, steps: int) -> tuple[float, int]:
    """Images/s the training step of shipped config ``name`` consumes (random images, after warm-up)."""
    config = load_config(CONFIGS / f"{name}.yaml", [f"device={device}"])
    step = BareStep(config, device)
    batch = config.trainer.batch_size
    images = torch.rand(batch, step.info.channels, step.info.image_size, step.info.image_size, device=device)
    indices = torch.arange(batch, device=device)
    for _ in range(2):
        step(images, indices)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(images, indices)
    sync(device)
    return batch * steps / (time.perf_counter() - start), batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=SHIPPED)
    parser.add_argument("--cache", nargs="+", choices=["warm", "cold"], default=["warm", "cold"])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if "cold" in args.cache:
        try:
            drop_page_cache()
        except OSError as err:
            parser.exit(2, f"data_loading.py: --cache cold: cannot write {DROP_CACHES} ({err.strerror}); use warm\n")
    images, batch = (64, 8) if args.smoke else (args.images, 128)
    device = resolve_device("auto")
    work = Path(tempfile.mkdtemp(prefix="ssl_loading_"))
    lines = ["| images | page cache | workers | image folder, img/s | shards, img/s | shards / folder |"]
    lines.append("|---|---|---|---|---|---|")
    most = max(args.workers)
    slowest = float("inf")  # the slowest loader with the most workers, at the smallest size
    for size in args.sizes:
        folder = work / f"jpeg{size}"
        make_jpegs(folder, images, size)
        shards, _ = write_shards(folder, str(work / f"shards{size}" / "part-%06d.tar"), 16 if args.smoke else 256)
        common = [f"data.image_size={size}", "data.channels=3"]
        folder_data = ["data.name=image_folder", f"data.root={folder}", *common]
        shard_data = ["data.name=shards", "data.root=[" + ",".join(str(s) for s in shards) + "]", *common]
        for cache in args.cache:
            for workers in args.workers:
                cold = cache == "cold"
                folder_rate = loader_rate(folder_data, workers, device, batch, cold)
                shard_rate = loader_rate(shard_data, workers, device, batch, cold)
                if size == min(args.sizes) and workers == most:
                    slowest = min(slowest, shard_rate, folder_rate)
                lines.append(
                    f"| {size} px JPEG | {cache} | {workers} | {folder_rate:.0f} | {shard_rate:.0f} | "
                    f"**{shard_rate / folder_rate:.2f}x** |"
                )
    model_lines = [
        f"| config | batch | training step consumes, img/s | slowest loader above, {most} workers, img/s | limited by |"
    ]
    model_lines.append("|---|---|---|---|---|")
    for name in args.configs if not args.smoke else args.configs[:1]:
        rate, batch = model_rate(name, device, 2 if args.smoke else 10)
        limit = "the loader" if slowest < rate else "the model"
        model_lines.append(f"| {name} | {batch} | {rate:.0f} | {slowest:.0f} | {limit} |")
    body = (
        f"{images} JPEGs per size (10 classes), shards of 256, batch {batch}, device {device}; one pass each, "
        "including the uint8 -> float conversion on the device. Page cache warm: the files read before; cold: "
        "the page cache dropped before each pass.\n\n"
        + "\n".join(lines)
        + "\n\nThe model's side (shipped Fashion-MNIST configs, their own batch and size, random images):\n\n"
        + "\n".join(model_lines)
    )
    report("Data loading: image folder vs shards vs the model (benchmarks/data_loading.py)", body, args.smoke)


if __name__ == "__main__":
    run_main(main)
