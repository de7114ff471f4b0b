"""Relative patch location: encode every patch once vs the naive pair-wise encoding.

The naive version builds each (centre, neighbour) pair as its own two-patch input, so with all 8
pairs per image it encodes 16 patches per image (the centre 8 times) instead of 9. Both versions
run the same full training step (make_batch, forward, loss, backward, AdamW step) on the same
encoder, head and batches, interleaved in one run so that machine drift hits both alike.

    python benchmarks/relative_patch_encoding.py [--smoke] [--steps N] [--batch B] [--size S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_main  # noqa: E402

from ssl_pretrain.encoders import build_encoder  # noqa: E402
from ssl_pretrain.tasks import RelativePatchLocation  # noqa: E402
from ssl_pretrain.tasks.parts.patches import CENTRE, NEIGHBOURS  # noqa: E402


def naive_forward(task: RelativePatchLocation, patches: torch.Tensor) -> torch.Tensor:
    """Logits ``(B * 8, 8)`` from patches ``(B, 9, C, p, p)``, encoding each pair's two patches
    separately: the centre is encoded once per pair (16 encoder inputs per image)."""
    centre = patches[:, CENTRE : CENTRE + 1].expand(-1, 8, -1, -1, -1)
    neighbours = patches[:, list(NEIGHBOURS)]
    pairs = torch.stack([centre, neighbours], dim=2).flatten(0, 1)  # (B * 8, 2, C, p, p)
    features = task.encoder.forward_features(pairs.flatten(0, 1)).view(len(pairs), -1)
    return task.head(features)


def time_steps(task, optimizer, forward, images, steps: int) -> float:
    """Seconds per full training step, averaged over ``steps``."""
    start = time.perf_counter()
    for _ in range(steps):
        patches, labels = task.make_batch(images)
        loss = F.cross_entropy(forward(patches), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=48, help="image side after resizing (Fashion-MNIST config: 48)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.rounds, args.batch = 1, 1, 4
    torch.manual_seed(0)
    encoder = build_encoder(
        "small_resnet", {"widths": [32, 64, 128], "blocks": [1, 1, 1]}, 1, args.size, [0.286], [0.353]
    )
    task = RelativePatchLocation(encoder, pairs="all")
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
    images = torch.rand(args.batch, 1, args.size, args.size)
    with torch.no_grad():
        patches, _ = task.make_batch(images)
        task.eval()
        same = torch.allclose(task(patches), naive_forward(task, patches), atol=1e-4)
        task.train()
    time_steps(task, optimizer, task.forward, images, 1)  # warm-up
    time_steps(task, optimizer, lambda p: naive_forward(task, p), images, 1)
    once, naive = [], []
    for _ in range(args.rounds):
        once.append(time_steps(task, optimizer, task.forward, images, args.steps))
        naive.append(time_steps(task, optimizer, lambda p: naive_forward(task, p), images, args.steps))
    t_once, t_naive = min(once), min(naive)
    table = (
        "| version | patches encoded per image | ms per step | ratio to naive |\n|---|---|---|---|\n"
        f"| once per patch (ssl_pretrain) | 9 | {1000 * t_once:.1f} | {t_once / t_naive:.2f}x |\n"
        f"| naive pair-wise | 16 | {1000 * t_naive:.1f} | 1.00x |"
    )
    detail = (
        f"Batch {args.batch} images x 8 pairs, {args.size} px images, small_resnet [32, 64, 128], full "
        f"AdamW training step; best of {args.rounds} rounds of {args.steps} steps, interleaved. "
        f"Same logits in eval mode: {same}."
    )
    title = "Relative patch location: once-per-patch vs naive pair encoding (benchmarks/relative_patch_encoding.py)"
    report(title, table + "\n\n" + detail, args.smoke)


if __name__ == "__main__":
    run_main(main)
