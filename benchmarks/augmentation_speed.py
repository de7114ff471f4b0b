"""On-device batched augmentation (Kornia, as the framework runs it) vs the same augmentations per sample
with torchvision in DataLoader workers, at 28, 32 and 96 px.

    python benchmarks/augmentation_speed.py [--sizes 28 32 96] [--images 4096] [--workers 2] [--smoke]

The pipeline is Exemplar's with colour (configs/stl10/exemplar.yaml): affine (rotation 20 deg, translation
0.2, scale 0.7-1.4), brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1, on RGB uint8 images held in
memory. Framework: the trainer's DataLoader of uint8 batches (128), ``to_device_float`` and the Kornia
pipeline on the device (here the CPU, 2 intra-op threads). Per-sample: ``torchvision.transforms.v2``
(RandomAffine bilinear + ColorJitter + ToDtype) in ``Dataset.__getitem__`` with ``--workers`` DataLoader
workers and the same batch size. Both produce float batches in [0, 1]; median images/s of 3 passes over
the whole set.
Also: the time of each Kornia op on one batch, to show what dominates. Target: >= 3x at 32 px.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import kornia.augmentation as K
import torch
import torchvision.transforms.v2 as T
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_main, sync  # noqa: E402

from ssl_pretrain.data import DataInfo, EpochBatchSampler, make_loader, to_device_float  # noqa: E402
from ssl_pretrain.data.sources import TensorImages  # noqa: E402
from ssl_pretrain.tasks.parts.views import view_augmentation  # noqa: E402

PIPELINE = dict(translate=0.2, scale=[0.7, 1.4], rotation=20.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
BATCH = 128
PASSES = 3  # timed passes over the images per measurement; the median is reported


def kornia_pipeline() -> torch.nn.Module:
    return view_augmentation(3, **PIPELINE)


class PerSample(Dataset):
    """Each ``__getitem__`` augments one uint8 ``(3, S, S)`` image with torchvision."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        p = PIPELINE
        self.transform = T.Compose(
            [
                T.RandomAffine(
                    p["rotation"], (p["translate"],) * 2, tuple(p["scale"]), interpolation=T.InterpolationMode.BILINEAR
                ),
                T.ColorJitter(p["brightness"], p["contrast"], p["saturation"], p["hue"]),
                T.ToDtype(torch.float32, scale=True),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.images[i])


def framework_rate(images: torch.Tensor, device: torch.device) -> float:
    """Median images/s over passes of uint8 batches, each made float and augmented on ``device``."""
    info = DataInfo(3, images.shape[-1], [0.5] * 3, [0.25] * 3)
    augment = kornia_pipeline().to(device)
    sampler = EpochBatchSampler(len(images), BATCH, seed=0)
    pin = device.type == "cuda"
    loader = make_loader(TensorImages(images, None, "synthetic"), sampler, num_workers=0, pin_memory=pin)
    augment(to_device_float(images[:BATCH], info, device))  # warm-up: first-call allocations
    rates = []
    for _ in range(PASSES):
        start = time.perf_counter()
        for batch in loader:
            out = augment(to_device_float(batch.images, info, device))
        sync(device)
        assert out.dtype == torch.float32
        rates.append(len(sampler) * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def per_sample_rate(images: torch.Tensor, workers: int) -> float:
    """Median images/s over passes, each starting its workers as a ``DataLoader`` epoch does."""
    loader = DataLoader(PerSample(images), batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True)
    rates = []
    for _ in range(PASSES):
        start = time.perf_counter()
        batches = 0
        for batch in loader:
            batches += 1
            assert batch.dtype == torch.float32
        rates.append(batches * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def op_times(size: int, device: torch.device, repeats: int = 15) -> list[tuple[str, float]]:
    """Median milliseconds per batch of each op of the Kornia pipeline, run alone on a float batch, and
    of Kornia's own ``RandomHue`` (HSV round trip) that the pipeline's ``RandomHueDirect`` replaces."""
    x = torch.rand(BATCH, 3, size, size, device=device)
    rows = []
    for op in [*kornia_pipeline(), K.RandomHue((-PIPELINE["hue"], PIPELINE["hue"]), p=1.0)]:
        op = op.to(device)
        op(x)
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            op(x)
            sync(device)
            times.append(time.perf_counter() - start)
        name = type(op).__name__ + (" (Kornia's, replaced)" if type(op) is K.RandomHue else "")
        rows.append((name, 1000 * statistics.median(times)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32, 96])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="256 images, nothing appended")
    args = parser.parse_args()
    count = 256 if args.smoke else args.images
    device = torch.device(args.device)
    rows = [
        "| size | Kornia batched on the device, img/s | torchvision per sample, "
        f"{args.workers} workers, img/s | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    profile = []
    for size in args.sizes:
        images = torch.randint(
            0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        ours, theirs = framework_rate(images, device), per_sample_rate(images, args.workers)
        rows.append(f"| {size} px | {ours:.0f} | {theirs:.0f} | **{ours / theirs:.1f}x** |")
        ops = op_times(size, device)
        if not profile:  # header: the op names
            profile = ["| size | " + " | ".join(name for name, _ in ops) + " |", "| --- |" + " --- |" * len(ops)]
        profile.append(f"| {size} px | " + " | ".join(f"{ms:.1f} ms" for _, ms in ops) + " |")
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (
        f"\n\n{count} RGB images per size, batch {BATCH}, device {device}, median of {PASSES} passes. "
        f"Median time per Kornia op on one batch of {BATCH}:\n\n" + "\n".join(profile) + "\n"
    )
    report(
        "On-device Kornia augmentation vs per-sample torchvision (benchmarks/augmentation_speed.py)", body, args.smoke
    )


if __name__ == "__main__":
    run_main(main)
