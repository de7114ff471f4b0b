"""Which images to label, and how far 10 to 600 labels go: Fashion-MNIST, labeled sets drawn at random
(3 seeds), class-balanced at random (3 seeds; it needs the labels, so a baseline a real user does not have) and
chosen by ``ssl-pretrain select`` (TypiClust, ProbCover, k-means, k-center) from the encoder's embeddings and,
as a control, from raw pixels. Every set is handed to the evaluations as a person would hand back the labels
(``data.labels``, ``index``-only rows: the true labels), and the encoder is evaluated by the frozen probe
(GAP features, ``probe.l2`` chosen on validation where every class has two labels, else the fixed recipe: its
first value) and kNN (``knn.k`` likewise). Optionally (``--fixmatch-budgets``) FixMatch from the pretrained
encoder and from random initialisation on the same labels.

Prints test top-1 mean ± std per cell, the classes each set covers, the seconds each choice took; writes the
JSON record and the plot (``--plot``, matplotlib: the ``plot`` extra). ``--encoder RUN`` reuses a finished
pretraining run; by default the shipped VICReg config is pretrained into ``--runs`` (reused when finished).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import get_args, get_type_hints

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, report, run_main  # noqa: E402
from label_budget_cells import Cell, chosen, drawn, evaluate, fixmatch, mean_std, raw_pixels_encoder  # noqa: E402

import ssl_pretrain as ssl  # noqa: E402
from ssl_pretrain.config.sections import SelectConfig  # noqa: E402
from ssl_pretrain.data import open_split  # noqa: E402
from ssl_pretrain.errors import BadInput  # noqa: E402

BUDGETS = [10, 20, 40, 60, 100, 250, 600]
# every select.strategy the config accepts, but the random baseline (drawn here, 3 seeds)
STRATEGIES = [s for s in get_args(get_type_hints(SelectConfig)["strategy"]) if s != "random"]
SMOKE = {"trainer.max_steps": 2, "data.limit": 512, "trainer.batch_size": 32, "trainer.progress": False}
# --smoke: the 512 first training images, tested on the development split's last 1000 (not the test set)
SMOKE_EVAL = ["data.limit=512", "data.development=1000", "probe.max_iter=20", "evaluation.batch_size=256"]
FIXMATCH = ["finetune.steps=1000", "finetune.lr=0.003", "finetune.batch_size=64", "finetune.augment=crop_flip"]


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "label_budget")
    parser.add_argument("--encoder", type=Path, help="a finished pretraining run (default: pretrain vicreg.yaml)")
    parser.add_argument("--budgets", type=int, nargs="+", default=BUDGETS)
    parser.add_argument("--seeds", type=int, default=3, help="draws of the random and class-balanced sets")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--no-raw", action="store_true", help="no selection from raw pixels (the control)")
    parser.add_argument("--fixmatch-budgets", type=int, nargs="*", default=[])
    parser.add_argument(
        "--fixmatch-strategy", default="typiclust (encoder)",
        help="the labeled sets FixMatch also trains on besides the random draws: given, not chosen on the test set "
        "(choose it in a development run: data.development=10000)",
    )  # fmt: skip
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "label_budget.png")
    parser.add_argument("--smoke", action="store_true", help="tiny pretraining, 512 images, budgets 10 and 20")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="for the pretraining and the evaluations")
    args = parser.parse_args()
    if args.smoke:
        args.budgets, args.seeds, args.plot = [10, 20], 1, args.runs / "label_budget.png"
        args.fixmatch_budgets = args.fixmatch_budgets or [20]
    return args


def encoder_run(args) -> Path:
    """The pretrained encoder's run: ``--encoder``, or the shipped VICReg config pretrained into ``--runs``."""
    if args.encoder is not None:
        return ssl.Run.open(args.encoder).directory
    run = args.runs / ("vicreg-smoke" if args.smoke else "vicreg")
    if not (run / "metrics.json").is_file():
        overrides = {"output_dir": str(args.runs), "run_name": run.name, "trainer.progress": False}
        overrides |= SMOKE if args.smoke else {}
        ssl.pretrain(REPO / "configs" / "fashion_mnist" / "vicreg.yaml", [*_strings(overrides), *args.overrides])
    return run


def embeddings(run: Path, work: Path, raw: bool, extra: list[str]) -> dict[str, Path]:
    """The collections' embeddings to select from: the encoder's, and (``raw``) the raw pixels'. Of the
    pretraining split: the training images (for Fashion-MNIST all 60k, what ``select`` embeds by default), with
    ``data.limit`` and ``data.development`` applied, so a pick is always a training position."""
    spec = ssl.load_encoder(run).spec
    sources = {"encoder": run}
    if raw:
        sources["raw pixels"] = raw_pixels_encoder(work / "raw_pixels", spec.in_channels, spec.image_size)
    folders = {}
    for name, source in sources.items():
        folder = work / f"embeddings-{name.replace(' ', '_')}"
        if not (folder / "embed.json").is_file() or not json.loads((folder / "embed.json").read_text()).get("complete"):
            config = ssl.load_config(run / "config.yaml", extra)
            ssl.embed(source, ["embed.split=pretrain", f"embed.output={folder}", "embed.projector_images=0",
                               "trainer.progress=false", *extra], config=config)  # fmt: skip
        folders[name] = folder
    return folders


def label_sets(labels, budget: int, args, folders: dict[str, Path]):
    """``(row, seed, cell)`` of every labeled set of ``budget`` images."""
    for seed in range(args.seeds):
        yield "random", seed, Cell(drawn(labels, budget, seed, False), 0)
        yield "class-balanced random", seed, Cell(drawn(labels, budget, seed, True), 0)
    for source, folder in folders.items():
        for strategy in args.strategies:
            positions, seconds, details = chosen(folder, budget, strategy, 0)
            yield f"{strategy} ({source})", 0, Cell(positions, 0, seconds, {"details": details})


def main() -> None:
    args = parsed_args()
    run, work = encoder_run(args), args.runs / "label_budget"
    extra = [*(SMOKE_EVAL if args.smoke else []), *args.overrides]
    # the collection selected from: the training images (data.limit of them with --smoke), true labels kept here
    labels = open_split(ssl.load_config(run / "config.yaml", extra).data, "pretrain").labels
    folders = embeddings(run, work, not args.no_raw, extra)
    cells: dict[str, dict[int, list[Cell]]] = {}
    for budget in args.budgets:
        for row, seed, cell in label_sets(labels, budget, args, folders):
            cell.classes = len(set(labels[cell.positions].tolist()))
            evaluate(run, cell, work, f"{row.replace(' ', '_')}-{budget}-s{seed}", seed, extra)
            cells.setdefault(row, {}).setdefault(budget, []).append(cell)
            print(f"{budget:>4} {row:<28} seed {seed}: {cell.scores} classes {cell.classes}", flush=True)
    run_fixmatch(args, run, work, cells, extra)
    body = tables(cells, args.budgets)
    plotted = plot(cells, args.budgets, args.plot)
    body += f"\n\nPlot: `{plotted.relative_to(REPO) if plotted.is_relative_to(REPO) else plotted}`." if plotted else ""
    record = {row: {b: [c.__dict__ for c in cs] for b, cs in by_budget.items()} for row, by_budget in cells.items()}
    report(
        "Label budget: which images to label, 10 to 600 labels (Fashion-MNIST)",
        body,
        args.smoke,
        {"cells": record},
        work,
    )


def run_fixmatch(args, run: Path, work: Path, cells: dict, extra: list[str]) -> None:
    """FixMatch from the encoder and from random initialisation on the random draws and on the sets of
    ``--fixmatch-strategy`` at ``--fixmatch-budgets``."""
    steps = ["finetune.steps=4", "finetune.batch_size=8"] if args.smoke else []
    for budget in args.fixmatch_budgets:
        if args.fixmatch_strategy not in cells:
            raise BadInput(f"--fixmatch-strategy: no labeled sets {args.fixmatch_strategy!r}; rows: {', '.join(cells)}")
        for row in ("random", args.fixmatch_strategy):
            for seed, cell in enumerate(cells[row][budget]):
                name = f"{row.replace(' ', '_')}-{budget}-s{seed}"
                for init in ("pretrained", "random"):
                    fixmatch(run, cell, work, name, seed, init, [*FIXMATCH, *steps, *extra])


def _strings(overrides: dict) -> list[str]:
    return [f"{key}={json.dumps(value) if isinstance(value, bool) else value}" for key, value in overrides.items()]


def _mean(cells: list[Cell], key: str) -> float:
    values = [c.scores[key] for c in cells if key in c.scores]
    return sum(values) / len(values) if values else float("nan")


def tables(cells: dict, budgets: list[int]) -> str:
    """One table per measure: rows the ways of choosing, columns the budgets."""
    head = "| labeled set | " + " | ".join(str(b) for b in budgets) + " |\n|" + " --- |" * (len(budgets) + 1)
    parts = []
    measures = [("probe", "Frozen probe, test top-1 (%)"), ("knn", "kNN, test top-1 (%)")]
    measures += [
        (k, f"FixMatch from {k.split('_')[1]} init, test top-1 (%)") for k in ("fixmatch_pretrained", "fixmatch_random")
    ]
    for key, title in measures:
        lines = [f"| {row} | " + " | ".join(mean_std([c.scores[key] for c in by.get(b, []) if key in c.scores])
                                           for b in budgets) + " |" for row, by in cells.items()]  # fmt: skip
        if any(key in c.scores for by in cells.values() for cs in by.values() for c in cs):
            parts.append(f"{title}:\n\n{head}\n" + "\n".join(lines))
    coverage = [f"| {row} | " + " | ".join(mean_std([float(c.classes) for c in by.get(b, [])]) for b in budgets) + " |"
                for row, by in cells.items()]  # fmt: skip
    seconds = [f"| {row} | " + " | ".join(mean_std([c.seconds for c in by.get(b, [])]) for b in budgets) + " |"
               for row, by in cells.items() if "(" in row]  # fmt: skip
    parts.append(f"Classes covered (of 10):\n\n{head}\n" + "\n".join(coverage))
    parts.append(f"Selection seconds:\n\n{head}\n" + "\n".join(seconds))
    return "\n\n".join(parts)


def plot(cells: dict, budgets: list[int], path: Path) -> Path | None:
    """Test top-1 against the number of labels (log axis), one line per way of choosing: the frozen probe on
    the left (and FixMatch, dashed, where run), kNN on the right."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: no plot (pip install matplotlib, or the plot extra)", file=sys.stderr)
        return None
    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    colours = dict(zip(cells, plt.get_cmap("tab10").colors * 2, strict=False))
    panels = (
        (axes[0], (("probe", "-"), ("fixmatch_pretrained", "--")), "frozen probe"),
        (axes[1], (("knn", "-"),), "kNN"),
    )
    for axis, keys, title in panels:
        for row, by in cells.items():
            for key, style in keys:
                points = [(b, _mean(by[b], key)) for b in budgets if b in by and any(key in c.scores for c in by[b])]
                if points:
                    label = row if key != "fixmatch_pretrained" else f"{row}, FixMatch"
                    axis.plot(
                        *zip(*points, strict=True), style, marker="o", markersize=3, color=colours[row], label=label
                    )
        axis.set_xscale("log")
        axis.set_xticks(budgets, [str(b) for b in budgets])
        axis.set_xlabel("labeled images")
        axis.set_title(f"Fashion-MNIST, {title}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test top-1 (%)")
    axes[0].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    run_main(main)
