"""What limits the low-label figure: how good can a frozen encoder of this architecture be with few labels?

    python benchmarks/supervised_ceiling.py --runs RUNS [--config multi] [--fraction 0.01] [--seeds 3]
                                            [--steps 4000] [--smoke] [KEY=VALUE ...]

The architecture of ``--config`` (pretrained in ``RUNS/<config>``, a finished run reused) is trained once more,
from random initialisation, **with every training label** (supervised; the low-label benchmark's recipe
with crop + flip, its best validation epoch kept), then frozen and probed exactly like the pretrained
encoder: the GAP and the best-layer linear probe with ``--fraction`` of the labels, chosen by 5-fold
cross-validation, over ``--seeds`` label samples. The supervised encoder has seen 100x the labels, so its
probe is what features made for this dataset's classes give with 600 labels: a ceiling no pretext task is
expected to pass, and the room between it and the pretrained encoder is what a better pretext task could win.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_config, run_main  # noqa: E402
from low_label_cells import (  # noqa: E402
    FINETUNE_RECIPE,
    HEAD,
    SMOKE_EVAL,
    SMOKE_PRETRAIN,
    mean_spread,
    pretrained_run,
    probe_cells,
)

import ssl_pretrain as ssl  # noqa: E402
from ssl_pretrain.encoders.export import export_encoder  # noqa: E402
from ssl_pretrain.evaluation.shared.classifier import load_classifier  # noqa: E402

SUPERVISED_NAME = "supervised-all-labels"


def supervised_encoder(run: Path, steps: int, extra: list[str]) -> tuple[Path, dict]:
    """Train ``run``'s architecture from scratch on every label and export its encoder as a run directory
    of its own (``run/<SUPERVISED_NAME>``, with the pretrained run's config and data record, so it is probed
    on the same data); a finished one is reused. Returns the directory and the fine-tuning report."""
    out = run / SUPERVISED_NAME
    finetuned = run / "finetune" / SUPERVISED_NAME
    if not (out / "encoder.pt").is_file():
        recipe = [*FINETUNE_RECIPE, *HEAD["random"], "finetune.augment=crop_flip", "finetune.init=random"]
        overrides = ["data.label_fraction=1.0", f"finetune.steps={steps}", *recipe, *extra]
        ssl.finetune(run, config=run_config(run, [*overrides, f"finetune.name={SUPERVISED_NAME}"]))
        model, _ = load_classifier(finetuned / "checkpoints" / "best.pt")
        out.mkdir(exist_ok=True)
        for record in ("config.yaml", "data_split.json"):
            shutil.copy(run / record, out / record)
        export_encoder(model.encoder, out)
    return out, json.loads((finetuned / "finetune.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, required=True, help="where the pretraining run is (or goes)")
    parser.add_argument("--config", default="multi")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000, help="supervised training steps on every label")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run, how = pretrained_run(args.config, args.runs, (SMOKE_PRETRAIN if args.smoke else []) + args.overrides)
    extra = (SMOKE_EVAL if args.smoke else []) + args.overrides
    supervised, trained = supervised_encoder(run, 2 if args.smoke else args.steps, extra)
    probes = [*extra, "evaluation.val_folds=5"]
    rows = {}
    for name, encoder in ((f"{args.config} (pretrained, no labels)", run), ("supervised on every label", supervised)):
        cells = {"gap": [], "best": []}
        for seed in range(args.seeds):
            for method in cells:
                cell = probe_cells(encoder, args.fraction, seed, "none", method == "best", probes)["pretrained"]
                cells[method].append(cell)
        rows[name] = cells
    lines = [
        f"| encoder | GAP probe, {args.fraction:g} of the labels | best-layer probe (layers chosen) |",
        "|---|---|---|",
    ]
    for name, cells in rows.items():
        layers = ", ".join(c.setting["layer"] for c in cells["best"])
        gap, best = mean_spread([c.test for c in cells["gap"]]), mean_spread([c.test for c in cells["best"]])
        lines.append(f"| {name} | {gap} | {best} ({layers}) |")
    (pretrained, supervised_cells) = rows.values()
    room = {m: statistics.mean(c.test for c in supervised_cells[m]) - statistics.mean(c.test for c in pretrained[m])
            for m in ("gap", "best")}  # fmt: skip
    lines.append(
        f"\nLike with like, supervised minus pretrained: GAP probe {room['gap']:+.2f} points, best-layer probe "
        f"{room['best']:+.2f} points."
    )
    body = (
        f"Architecture of {args.config} ({how}: {run}); the supervised encoder trained {trained['protocol']['steps']} "
        f"steps on every training label ({trained['train_seconds'] / 60:.1f} min), its own test top-1 "
        f"{trained['test_top1']:.2f}%. Probes: {args.fraction:g} of the labels, {args.seeds} label seeds, 5-fold "
        "cross-validation, test top-1 mean +- std.\n\n" + "\n".join(lines)
    )
    record = {name: {m: [dataclasses.asdict(c) for c in cs] for m, cs in cells.items()} for name, cells in rows.items()}
    title = "Supervised ceiling for frozen encoders (benchmarks/supervised_ceiling.py)"
    report(title, body, args.smoke, {"rows": record, "supervised_training": trained}, args.runs)


if __name__ == "__main__":
    run_main(main)
