"""Which images to label, and how far 10 to 600 labels go: Fashion-MNIST, labeled sets drawn at random
(3 seeds), class-balanced at random (3 seeds; it needs the labels, so a baseline a real user does not have) and
chosen by ``ssl-pretrain select`` (TypiClust, ProbCover, k-means, k-center) from the encoder's embeddings and,
as a control, from raw pixels. Every set is handed to the evaluations as a person would hand back the labels
(``data.labels``, ``index``-only rows: the true labels), and the encoder is evaluated by the frozen probe
(GAP features, ``probe.l2`` chosen on validation where every class has two labels, else the fixed recipe: its
first value) and kNN (``knn.k`` likewise). Optionally (``--fixmatch-budgets``) FixMatch from the pretrained
encoder and from random initialisation on the same labels, by ``low_label.py``'s 1% recipe (finished runs
reused). ``--diagnostics`` (on a development split only) prints every probe and kNN setting's test top-1 where
a class has a single label and the fixed recipe applies: how that recipe is decided. ``--merge`` adds the cells
of earlier records (budgets and rows this run did not evaluate) to the tables and the plot.

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
from label_budget_cells import (  # noqa: E402
    Cell,
    chosen,
    drawn,
    evaluate,
    fixmatch,
    mean_std,
    pretraining_embeddings,
    raw_pixels_encoder,
    values,
)

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


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "label_budget")
    parser.add_argument("--encoder", type=Path, help="a finished pretraining run (default: pretrain vicreg.yaml)")
    parser.add_argument("--budgets", type=int, nargs="+", default=BUDGETS)
    parser.add_argument("--seeds", type=int, default=3, help="draws of the random and class-balanced sets")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--no-raw", action="store_true", help="no selection from raw pixels (the control)")
    parser.add_argument("--fixmatch-budgets", type=int, nargs="*", default=[])
    parser.add_argument("--fixmatch-seeds", type=int, nargs="+", default=[3], help="FixMatch runs a row at each "
                        "FixMatch budget (one value, or one a budget): the first draws, or training seeds on a "
                        "strategy's one set")  # fmt: skip
    parser.add_argument("--fixmatch-scratch-seeds", type=int, nargs="+", help="of those, from random init (default: "
                        "all)")  # fmt: skip
    parser.add_argument(
        "--fixmatch-strategy", default="typiclust (encoder)",
        help="the labeled sets FixMatch also trains on besides the random draws: given, not chosen on the test set "
        "(choose it in a development run: data.development=10000)",
    )  # fmt: skip
    parser.add_argument("--diagnostics", action="store_true", help="every setting's test top-1 where too few "
                        "labels leave nothing to choose on: needs data.development (never the test set)")  # fmt: skip
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="records whose other cells to add")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "label_budget.png")
    parser.add_argument("--smoke", action="store_true", help="tiny pretraining, 512 images, budgets 10 and 20")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="for the pretraining and the evaluations")
    args = parser.parse_args()
    if args.smoke:
        args.budgets, args.seeds, args.plot = [10, 20], 1, args.runs / "label_budget.png"
        args.fixmatch_budgets, args.fixmatch_seeds = args.fixmatch_budgets or [20], [1]
    runs, scratch = args.fixmatch_seeds, args.fixmatch_scratch_seeds or args.fixmatch_seeds
    args.fixmatch_seeds = _per_budget(runs, args.fixmatch_budgets, "seeds")
    args.fixmatch_scratch_seeds = _per_budget(scratch, args.fixmatch_budgets, "scratch-seeds")
    if args.diagnostics and not args.smoke and not any(o.startswith("data.development=") for o in args.overrides):
        raise BadInput("--diagnostics reads test scores of settings nobody chose: give data.development=N")
    return args


def _per_budget(given: list[int], budgets: list[int], name: str) -> dict[int, int]:
    """``{budget: runs}`` of ``--fixmatch-<name>``: one value for every budget, or one a budget."""
    if len(given) not in (1, len(budgets)):
        raise BadInput(f"--fixmatch-{name}: one value, or one for each of --fixmatch-budgets")
    return dict(zip(budgets, given * len(budgets), strict=False))


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
    return {
        name: pretraining_embeddings(source, run, work / f"embeddings-{name.replace(' ', '_')}", extra)
        for name, source in sources.items()
    }


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
            evaluate(run, cell, work, f"{row.replace(' ', '_')}-{budget}-s{seed}", seed, extra, args.diagnostics)
            cells.setdefault(row, {}).setdefault(budget, []).append(cell)
            print(f"{budget:>4} {row:<28} seed {seed}: {cell.scores} classes {cell.classes}", flush=True)
    run_fixmatch(args, run, work, cells, extra)
    budgets = merge(cells, args.merge, args.budgets)
    body = tables(cells, budgets)
    plotted = plot(cells, budgets, args.plot)
    body += f"\n\nPlot: `{plotted.relative_to(REPO) if plotted.is_relative_to(REPO) else plotted}`." if plotted else ""
    record = {row: {b: [c.__dict__ for c in cs] for b, cs in by_budget.items()} for row, by_budget in cells.items()}
    report(
        "Label budget: which images to label, 10 to 600 labels (Fashion-MNIST)" + development_note(extra),
        body,
        args.smoke,
        {"cells": record},
        work,
    )


def run_fixmatch(args, run: Path, work: Path, cells: dict, extra: list[str]) -> None:
    """FixMatch from the encoder and from random initialisation on the random draws and on the sets of
    ``--fixmatch-strategy`` at ``--fixmatch-budgets``: ``--fixmatch-seeds`` runs a row, the first draws (each
    its own training seed) or a strategy's one set with training seeds 0, 1, ..."""
    steps = ["finetune.steps=4", "finetune.batch_size=8"] if args.smoke else []
    for budget in args.fixmatch_budgets:
        runs, scratch = args.fixmatch_seeds[budget], args.fixmatch_scratch_seeds[budget]
        if args.fixmatch_strategy not in cells or budget not in cells[args.fixmatch_strategy]:
            raise BadInput(f"--fixmatch-strategy: no labeled sets {args.fixmatch_strategy!r} of {budget}")
        for row in ("random", args.fixmatch_strategy):
            sets = cells[row][budget]
            for seed in range(runs):
                cell, drawn_seed = (sets[seed], seed) if len(sets) > 1 else (sets[0], 0)
                name = f"{row.replace(' ', '_')}-{budget}-s{drawn_seed}"
                for init in ("pretrained", "random")[: 2 if seed < scratch else 1]:
                    fixmatch(run, cell, work, name, seed, init, [*steps, *extra])


def merge(cells: dict, records: list[Path], budgets: list[int]) -> list[int]:
    """Add to ``cells`` each record's cells of a row and budget this run did not evaluate; the budgets of all."""
    every = set(budgets)
    for path in records:
        for row, by_budget in json.loads(path.read_text())["cells"].items():
            for budget, listed in by_budget.items():
                if int(budget) not in cells.get(row, {}):
                    cells.setdefault(row, {})[int(budget)] = [Cell(**c) for c in listed]
                    every.add(int(budget))
    order = ["random", "class-balanced random", *(f"{s} ({source})" for source in ("encoder", "raw pixels")
                                                  for s in STRATEGIES)]  # fmt: skip
    rows = sorted(cells, key=lambda row: order.index(row) if row in order else len(order))
    cells.update({row: cells.pop(row) for row in rows})  # the tables' order, whichever run a row came from
    return sorted(every)


def development_note(overrides: list[str]) -> str:
    """The title's note where the test split is a development split (``data.development``)."""
    held = [o.split("=", 1)[1] for o in overrides if o.startswith("data.development=")]
    return f", development split (the last {held[-1]} training images as its test split)" if held else ""


def _strings(overrides: dict) -> list[str]:
    return [f"{key}={json.dumps(value) if isinstance(value, bool) else value}" for key, value in overrides.items()]


def _mean(cells: list[Cell], key: str) -> float:
    found = values(cells, key)
    return sum(found) / len(found) if found else float("nan")


def tables(cells: dict, budgets: list[int]) -> str:
    """One table per measure: rows the ways of choosing, columns the budgets."""
    head = "| labeled set | " + " | ".join(str(b) for b in budgets) + " |\n|" + " --- |" * (len(budgets) + 1)
    parts = []
    measures = [("probe", "Frozen probe, test top-1 (%)"), ("knn", "kNN, test top-1 (%)")]
    measures += [
        (k, f"FixMatch from {k.split('_')[1]} init, test top-1 (%)") for k in ("fixmatch_pretrained", "fixmatch_random")
    ]
    for key, title in measures:
        lines = [f"| {row} | " + " | ".join(mean_std(values(by.get(b, []), key)) for b in budgets) + " |"
                 for row, by in cells.items() if any(key in c.scores for cs in by.values() for c in cs)]  # fmt: skip
        if any(key in c.scores for by in cells.values() for cs in by.values() for c in cs):
            parts.append(f"{title}:\n\n{head}\n" + "\n".join(lines))
    coverage = [f"| {row} | " + " | ".join(mean_std([float(c.classes) for c in by.get(b, [])]) for b in budgets) + " |"
                for row, by in cells.items()]  # fmt: skip
    seconds = [f"| {row} | " + " | ".join(mean_std([c.seconds for c in by.get(b, [])]) for b in budgets) + " |"
               for row, by in cells.items() if "(" in row]  # fmt: skip
    parts.append(f"Classes covered (of 10):\n\n{head}\n" + "\n".join(coverage))
    parts.append(f"Selection seconds:\n\n{head}\n" + "\n".join(seconds))
    return "\n\n".join([*parts, *fixed_recipe_tables(cells, budgets)])


def fixed_recipe_tables(cells: dict, budgets: list[int]) -> list[str]:
    """Per evaluation, the test top-1 of each setting, mean over the labeled sets (every row) of a budget with a
    single-label class (``--diagnostics``), the best marked: what the fixed recipe's first value should be."""
    parts = []
    for key in ("probe", "knn"):
        by_budget = {b: [c.candidates[key] for by in cells.values() for c in by.get(b, []) if key in c.candidates]
                     for b in budgets}  # fmt: skip
        by_budget = {b: found for b, found in by_budget.items() if found}
        if not by_budget:
            continue
        settings = list(next(iter(by_budget.values()))[0])
        lines = [f"| labels | sets | {' | '.join(settings)} |", "|" + " --- |" * (len(settings) + 2)]
        for budget, found in by_budget.items():
            means = [sum(f[s] for f in found) / len(found) for s in settings]
            best = means.index(max(means))
            lines.append(f"| {budget} | {len(found)} | " + " | ".join(
                f"**{m:.2f}**" if i == best else f"{m:.2f}" for i, m in enumerate(means)) + " |")  # fmt: skip
        title = "probe.l2" if key == "probe" else "knn.k"
        parts.append(f"Too few labels to validate, {title}: test top-1 of each setting (mean over the sets):\n\n"
                     + "\n".join(lines))  # fmt: skip
    return parts


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
