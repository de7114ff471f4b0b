"""The evaluation suite on one pretrained run: multi-layer probe, kNN, low-label fine-tuning vs random init.

    python benchmarks/evaluation_suite.py --run RUN_DIR [--label-fraction 0.1] [--smoke] [KEY=VALUE ...]

Every figure comes from the framework's own commands (the JSON each writes is kept in the run
directory); the tables are printed and appended to RESULTS.md. ``--smoke`` shrinks every budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_results, run_config  # noqa: E402

from ssl_pretrain.evaluation.finetune import run_finetune  # noqa: E402
from ssl_pretrain.evaluation.knn import run_knn  # noqa: E402
from ssl_pretrain.evaluation.probe import run_probe  # noqa: E402

SMOKE = [
    "probe.train_limit=200",
    "probe.max_iter=10",
    "probe.layer_dim=256",
    "finetune.epochs=1",
    "finetune.batch_size=32",
    "online.every=null",
]


def multilayer_table(run: Path, overrides: list[str]) -> str:
    start = time.perf_counter()
    report = run_probe(run_config(run, ["probe.layers=all", "probe.control=random_init", *overrides]))
    rows = report["results"]
    random = {r["layer"]: r["top1"] for r in rows if r["encoder"] == "random_init"}
    lines = ["| layer | pooling | dim | pretrained | random init |", "|---|---|---|---|---|"]
    for r in (r for r in rows if r["encoder"] == "pretrained"):
        lines.append(
            f"| {r['layer']} | {r['pooling']} | {r['feature_dim']} | **{r['top1']:.2f}%** | {random[r['layer']]:.2f}% |"
        )
    minutes = (time.perf_counter() - start) / 60
    return "\n".join(lines) + f"\n\nOne extraction pass per encoder, {len(random)} probes each; {minutes:.1f} min."


def knn_line(run: Path, overrides: list[str]) -> str:
    rows = {r["encoder"]: r for r in run_knn(run_config(run, ["probe.control=random_init", *overrides]))["results"]}
    return (
        f"kNN (k=20, T=0.07, GAP features): pretrained **{rows['pretrained']['top1']:.2f}%**, random init "
        f"{rows['random_init']['top1']:.2f}% ({rows['pretrained']['extract_seconds']:.0f} s extraction)"
    )


def finetune_table(run: Path, fraction: float, overrides: list[str]) -> str:
    lines = [
        "| start | strategy | test top-1 (best val. epoch) | test top-1 (last) | training time |",
        "|---|---|---|---|---|",
    ]
    label = f"labels{fraction:g}"
    probe = run_probe(run_config(run, [f"data.label_fraction={fraction}", *overrides]))["results"][0]
    for init, freeze in (("pretrained", "null"), ("random", "null"), ("pretrained", "auto")):
        name = f"bench-{label}-{init}-{freeze}-{int(time.time())}"
        report = run_finetune(
            run_config(
                run,
                [
                    f"data.label_fraction={fraction}",
                    f"finetune.init={init}",
                    f"finetune.freeze_until={freeze}",
                    f"finetune.name={name}",
                    *overrides,
                ],
            )
        )
        p = report["protocol"]
        strategy = p["strategy"] + (f" (auto: {p['auto_reason']})" if p["auto_reason"] else "")
        lines.append(
            f"| {init} | {strategy} | **{report['test_top1_best']:.2f}%** | {report['test_top1_last']:.2f}% "
            f"| {report['train_seconds'] / 60:.1f} min |"
        )
    p = report["protocol"]
    return (
        f"{fraction:g} of the labels ({p['train_split'].rsplit(', ', 1)[1]} to train, "
        f"{p['val_split'].rsplit(', ', 1)[1]} to validate), {p['epochs']} epochs, batch {p['batch_size']}, "
        f"{p['optimizer']} head lr {p['lr_head']} (pretrained layers x{p['lr_encoder'] / p['lr_head']:g}), "
        f"augmentation {p['augmentation']}, head {p['head']}.\n\n"
        + "\n".join(lines)
        + f"\n\nLinear probe (GAP) on the same {fraction:g} of the labels: {probe['top1']:.2f}%."
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True, help="a finished pretraining run directory")
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = (SMOKE if args.smoke else []) + args.overrides
    body = "\n\n".join(
        [
            "### Multi-layer linear probe\n\n" + multilayer_table(args.run, overrides),
            "### kNN\n\n" + knn_line(args.run, overrides),
            "### Fine-tuning with few labels\n\n" + finetune_table(args.run, args.label_fraction, overrides),
        ]
    )
    print(body)
    if not args.smoke:
        append_results(
            f"Evaluation suite on {args.run.name} (benchmarks/evaluation_suite.py)",
            body + f"\n\nRun: {args.run}; overrides: {' '.join(args.overrides) or 'none'}",
        )


if __name__ == "__main__":
    main()
