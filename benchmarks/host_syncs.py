"""Host synchronisations inside the training step of every shipped config (the GPU idles at each one).

    python benchmarks/host_syncs.py [--steps 6] [--precision fp32 bf16 fp16] [--smoke] [KEY=VALUE ...]

Runs each shipped Fashion-MNIST config for a few steps through the real trainer with
``trainer.sync_debug=count``: every step (not logging, checkpoints or the end of the run, which read values by
design) is watched at the Python level (``.item()``, printing, ``torch.tensor(list, device=...)``, list and
boolean-mask indices, copies between devices, ...) and at the ATen level (every operator, also inside torch
functions and libraries: ``_local_scalar_dense``, ``nonzero``, ``_linalg_check_errors``, ...). Counted on the
CPU: the calls are the same wherever the step runs, and a blocking ``.to(device)`` counts by the move it asks
for (on a GPU it would cross between host and device), not by what it moves on this CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, report, run_main, shipped_configs  # noqa: E402

import ssl_pretrain as ssl  # noqa: E402

CONFIGS = REPO / "configs" / "fashion_mnist"
SHIPPED = shipped_configs()
PRECISIONS = ["fp32", "bf16", "fp16"]


def count(config: str, precision: str, steps: int, overrides: list[str]) -> tuple[int, dict]:
    """Steps checked and the host-synchronising calls made inside them, by kind."""
    out = tempfile.mkdtemp(prefix="ssl_syncs_")
    run = ssl.pretrain(
        CONFIGS / f"{config}.yaml",
        [f"trainer.max_steps={steps}", "trainer.log_every=3", "trainer.progress=false", f"output_dir={out}",
         "data.limit=1024", "device=cpu", "trainer.sync_debug=count", f"trainer.precision={precision}", *overrides],
    )  # fmt: skip
    metrics = run.metrics
    return metrics["sync_checked_steps"], metrics["step_host_syncs_per_rank"][0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", nargs="+", default=PRECISIONS, choices=PRECISIONS)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    smoke = ["model.widths=[4,8]", "model.blocks=[1,1]", "trainer.batch_size=8"] if args.smoke else []
    lines = ["| config | precision | steps checked | host synchronisations in those steps | which |"]
    lines.append("|---|---|---|---|---|")
    for config in SHIPPED:
        for precision in args.precision:
            steps, kinds = count(config, precision, 3 if args.smoke else args.steps, smoke + args.overrides)
            which = ", ".join(f"{k} x{v}" for k, v in kinds.items()) or "-"
            lines.append(f"| {config} | {precision} | {steps} | **{sum(kinds.values())}** | {which} |")
    body = "\n".join(lines) + (
        "\n\nCounted with `trainer.sync_debug=count` around every training step (task batch construction, forward, "
        "loss, backward, optimizer and schedule), at the Python level (`.item()`, `.tolist()`, `bool`/`int`/`float` "
        "of a tensor, printing, `torch.tensor(host data, device=...)`, list and boolean-mask indices, `nonzero`, "
        "`unique`, one-argument `where`, `repeat_interleave` with tensor repeats, `bincount`, and any blocking "
        "`.to(device)` in the framework's code, judged by intent: counted even where host and device are this "
        "CPU's one memory) and at the ATen level (the same operators anywhere below, e.g. `_local_scalar_dense`, "
        "`_linalg_check_errors`, copies between devices); the optimizer's host-side step counters excepted. "
        "Shown on the CPU only: no GPU has run `benchmarks/gpu_check.py` for this repository yet. One process here; "
        "`tests/train/test_host_syncs.py` also counts every shipped config under torchrun with two."
    )
    report("Host synchronisations in the training step (benchmarks/host_syncs.py)", body, args.smoke)


if __name__ == "__main__":
    run_main(main)
