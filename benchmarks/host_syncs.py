"""Host synchronisations inside the training step of every shipped config (the GPU idles at each one).

    python benchmarks/host_syncs.py [--steps 6] [--smoke]

Runs each shipped Fashion-MNIST config for a few steps through the real trainer with
:class:`ssl_pretrain.utils.host_syncs.HostSyncCounter` active inside the steps (not in logging, checkpoints or
the end of the run, which read values by design), and counts the calls that would make the host wait for a
GPU. Counted on the CPU: the calls are the same wherever the step runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

from ssl_pretrain.cli import main as cli  # noqa: E402
from ssl_pretrain.train import trainer  # noqa: E402
from ssl_pretrain.utils.host_syncs import HostSyncCounter  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
SHIPPED = ["dae", "rotation", "exemplar", "relative_patch", "multi"]


def count(config: str, steps: int, overrides: list[str]) -> tuple[int, dict]:
    """Steps counted and the host-synchronising calls made inside them, by kind."""
    counter, seen = HostSyncCounter(), {"steps": 0}
    counter.active = False
    step = trainer._train_step

    def counted(run, batch):
        counter.active = True
        try:
            return step(run, batch)
        finally:
            counter.active = False
            seen["steps"] += 1

    trainer._train_step = counted
    out = tempfile.mkdtemp(prefix="ssl_syncs_")
    args = ["pretrain", "-c", str(CONFIGS / f"{config}.yaml"), f"trainer.max_steps={steps}", "trainer.log_every=3"]
    args += ["trainer.progress=false", f"output_dir={out}", "data.limit=1024", "device=cpu", *overrides]
    try:
        with counter:
            if cli(args) != 0:
                raise SystemExit(f"{config}: the run failed")
    finally:
        trainer._train_step = step
    return seen["steps"], dict(counter.counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    smoke = ["model.widths=[4,8]", "model.blocks=[1,1]", "trainer.batch_size=8"] if args.smoke else []
    lines = ["| config | steps counted | host synchronisations in those steps | which |", "|---|---|---|---|"]
    for config in SHIPPED:
        steps, kinds = count(config, 3 if args.smoke else args.steps, smoke + args.overrides)
        which = ", ".join(f"{k} x{v}" for k, v in kinds.items()) or "-"
        lines.append(f"| {config} | {steps} | **{sum(kinds.values())}** | {which} |")
    body = "\n".join(lines) + (
        "\n\nCounted by a TorchFunctionMode around every training step (forward, task batch construction, loss, "
        "backward, optimizer and schedule): `.item()`, `.tolist()`, `bool`/`int`/`float` of a tensor, "
        "`nonzero`, boolean-mask indexing, `unique`, `.cpu()`, `.numpy()`; the optimizer's host-side step "
        "counters excepted. Logging steps, checkpoints and the end of the run read values outside the step."
    )
    report("Host synchronisations in the training step (benchmarks/host_syncs.py)", body, args.smoke)


if __name__ == "__main__":
    main()
