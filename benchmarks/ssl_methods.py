"""The view-based methods side by side at one wall-clock budget, with and without multi-crop, on a development
split of the training images; and whether the label-free RankMe ranking agrees with a 1%-label probe.

    python benchmarks/ssl_methods.py [--runs DIR] [--methods exemplar byol vicreg] [--local-crops 0 4]
                                     [--minutes 10 | --steps N] [--recipes "" "trainer.lr=0.004" ...]
                                     [--fraction 0.01] [--seed 0] [--held-out 10000] [--smoke] [KEY=VALUE ...]

With ``data.development=10000`` the last 10k of Fashion-MNIST's 60k training images are the test split, every
method pretrains on the first 50k and the probes take their labels from those 50k: the real test set is never
opened, so the figures may decide recipes. Each (method, local crops) pair gets the same wall-clock budget: a
short calibration run of the shipped config measures its seconds per step on this machine (the whole loop:
data, steps, logging), and the run gets ``--minutes`` worth of steps (printed, with the minutes it really took).
Every run keeps three checkpoints (a third, two thirds, the end of its budget). ``--recipes`` tunes a shipped
config on the same footing: each is a quoted list of pretraining overrides (``""``: the config as shipped), every
method and local-crop setting is run with each at the same wall-clock budget (its own calibration, since a wider
encoder costs more per step), and the recipe with the best development-test GAP probe is marked chosen.
``--steps N`` gives every run N steps instead, with no calibration: recipes of one cost per step then differ in
their recipe alone, not in the calibration's noise (about 10% in steps between configs of one cost). Overrides
after the options (``seed=1``: a second pretraining seed) reach the pretraining runs; the probes keep ``--seed``.

Printed: per run, steps, minutes, images/s and views/s (multi-crop's local views counted), RankMe and the
normalised spread of its embeddings (no labels), the GAP linear probe with ``--fraction`` of the labels (L2
chosen on validation; development-test top-1) and kNN (k chosen on validation); then Spearman's rho between
RankMe and that probe over every run and checkpoint, and over the final runs alone.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_main  # noqa: E402
from low_label_cells import K_GRID, L2_GRID  # noqa: E402

import ssl_pretrain as ssl  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
VIEW_METHODS = ["exemplar", "byol", "vicreg"]
CALIBRATION_STEPS = (10, 40)  # two lengths, so the first steps (caches warming up) cancel out
SMOKE_CALIBRATION_STEPS = (2, 6)
UNCAPPED = "trainer.epochs=100000"  # the budget's steps decide, not the config's epochs
SMOKE = ["data.limit=512", "trainer.batch_size=16", "gauges.images=64", "probe.max_iter=20"]
SMOKE_DEFAULTS = {"methods": ["byol"], "local_crops": [0, 2], "minutes": 0.05, "held_out": 2000}


def run_name(stem: str, recipe: str) -> str:
    """``stem``, then a part that tells ``recipe``'s overrides apart (none for ``""``, the config as shipped)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", recipe).strip("_")
    if len(slug) > 48:
        slug = f"{slug[:39]}_{hashlib.sha1(recipe.encode()).hexdigest()[:8]}"
    return f"{stem}-{slug}" if slug else stem


def run_overrides(base: list[str], recipe: str, runs: Path, name: str, steps: int, local_crops: int) -> list[str]:
    """One run of this benchmark: ``base``, then ``recipe``'s overrides, then its name, steps and local crops."""
    return [*base, *shlex.split(recipe), f"output_dir={runs}", f"run_name={name}", f"trainer.max_steps={steps}",
            UNCAPPED, f"task.local_crops={local_crops}"]  # fmt: skip


def finished_or_pretrained(method: str, run: Path, overrides: list[str]) -> ssl.Run:
    """The run directory ``run`` if it holds a finished run, else ``method``'s shipped config pretrained there."""
    if (run / "metrics.json").is_file():
        return ssl.Run.open(run)
    return ssl.pretrain(CONFIGS / f"{method}.yaml", overrides)


def seconds_per_step(
    method: str, local_crops: int, runs: Path, base: list[str], lengths: tuple[int, int], recipe: str = ""
) -> float:
    """The loop's seconds per step of ``method``'s shipped config (with ``recipe``'s overrides) on this machine:
    two short calibration runs of ``lengths`` steps, their difference (so the first steps, which warm caches up,
    cancel out; when noise swamps it, the longer run's mean). Finished calibration runs are reused."""
    times = []
    for steps in lengths:
        name = run_name(f"calibrate-{method}-{local_crops}-{steps}", recipe)
        extra = [*run_overrides(base, recipe, runs, name, steps, local_crops), "gauges.every=null"]
        times.append(finished_or_pretrained(method, runs / name, extra).metrics["loop_seconds"])
    per_step = (times[1] - times[0]) / (lengths[1] - lengths[0])
    return per_step if per_step > 0 else times[1] / lengths[1]  # noise swamped the difference: the longer's mean


def pretrain_at_budget(
    method: str, local_crops: int, steps: int, runs: Path, base: list[str], recipe: str = ""
) -> ssl.Run:
    """``method``'s shipped config with ``recipe``'s overrides for ``steps`` steps (a finished run is reused)."""
    name = run_name(f"{method}-local{local_crops}-{steps}steps", recipe)
    every = max(1, -(-steps // 3))  # ceil: checkpoints at a third, two thirds and the end (the last three kept)
    extra = run_overrides(base, recipe, runs, name, steps, local_crops)
    extra += ["trainer.keep_last=3", f"trainer.checkpoint_every={every}", f"gauges.every={every}"]
    return finished_or_pretrained(method, runs / name, extra)


def probe_top1(source, base: list[str], fraction: float, seed: int) -> tuple[float, float]:
    """(validation, development-test) top-1 of the GAP linear probe of ``source``, L2 chosen on validation."""
    overrides = [*base, f"data.label_fraction={fraction}", f"seed={seed}", L2_GRID]
    selected = ssl.probe(source, overrides).selected["pretrained"]
    return selected["val_top1"], selected["test_top1"]


def knn_top1(run: ssl.Run, base: list[str], fraction: float, seed: int) -> float:
    overrides = [*base, f"data.label_fraction={fraction}", f"seed={seed}", K_GRID]
    return ssl.knn(run, overrides).selected["pretrained"]["test_top1"]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (no ties expected between measured floats)."""
    ranks = [np.argsort(np.argsort(np.asarray(x))) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1]) if len(a) > 2 else float("nan")


def _rho(value: float) -> str:
    return "n/a (fewer than 3)" if np.isnan(value) else f"{value:+.2f}"


def measure(run: ssl.Run, base: list[str], fraction: float, seed: int) -> list[dict]:
    """Every kept checkpoint of ``run`` (the last is the run's end): RankMe, spread and the probe."""
    cells = []
    for ranked in ssl.rank([run], base, snapshots=True):
        if Path(ranked.path) == run.directory:
            continue  # the run's encoder is its last snapshot
        val, test = probe_top1(ranked.path, base, fraction, seed)
        step = int(Path(ranked.path).stem.split("-")[1])
        cells.append({"checkpoint": ranked.path, "step": step, "rankme": ranked.rankme, "std": ranked.std,
                      "probe_val_top1": val, "probe_dev_test_top1": test})  # fmt: skip
    return sorted(cells, key=lambda c: c["step"])


def measured_run(
    method: str, local_crops: int, recipe: str, runs: Path, base: list[str], budget: tuple[float, tuple] | int,
    fraction: float, seed: int,
) -> dict:  # fmt: skip
    """One (method, local crops, recipe) pretrained for ``budget`` (minutes, calibration lengths; or an int, fixed
    steps with no calibration): its run's figures, every kept checkpoint's RankMe and probe, the final run's kNN."""
    if isinstance(budget, int):
        per_step, steps = None, budget
    else:
        per_step = seconds_per_step(method, local_crops, runs, base, budget[1], recipe)
        steps = max(3, int(budget[0] * 60 / per_step))
    run = pretrain_at_budget(method, local_crops, steps, runs, base, recipe)
    figures = {
        k: run.metrics[k] for k in ("steps", "loop_seconds", "images_per_s", "views_per_s", "precision", "gauges")
    }
    return {"method": method, "local_crops": local_crops, "recipe": recipe, "seconds_per_step": per_step,
            "metrics": figures, "checkpoints": measure(run, base, fraction, seed),
            "knn_dev_test_top1": knn_top1(run, base, fraction, seed)}  # fmt: skip


def bad_recipe(methods: list[str], recipes: list[str], base: list[str]) -> str | None:
    """A one-line message naming the first recipe that makes no valid config with one of ``methods`` (None: all
    do), checked before anything runs (the task's own options are checked when it is built)."""
    for recipe in recipes:
        try:
            for method in methods:
                ssl.load_config(CONFIGS / f"{method}.yaml", [*base, *shlex.split(recipe)])
        except (ValueError, ssl.BadInput) as err:  # shlex's unclosed quotes; an unknown key or a bad value
            return f"--recipes {recipe!r}: {err}"
    return None


def mark_chosen(record: list[dict]) -> None:
    """Set ``chosen`` on the recipe with the best development-test GAP probe of each method and local crops."""
    best: dict[tuple, dict] = {}
    for row in record:
        key, score = (row["method"], row["local_crops"]), row["checkpoints"][-1]["probe_dev_test_top1"]
        if key not in best or score > best[key]["checkpoints"][-1]["probe_dev_test_top1"]:
            best[key] = row
    for row in record:
        row["chosen"] = row is best[(row["method"], row["local_crops"])]


def table(record: list[dict], recipes: bool) -> list[str]:
    """The markdown table of ``record``; with ``recipes``, a column naming each row's recipe and one the choice."""
    head = ["method", "local crops", "steps", "minutes", "images/s", "views/s", "RankMe", "std", "GAP probe val",
            "GAP probe dev-test", "kNN dev-test"]  # fmt: skip
    if recipes:
        head = [*head[:2], "recipe", *head[2:], ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in record:
        m, last = r["metrics"], r["checkpoints"][-1]
        cells = [r["method"], str(r["local_crops"]), str(m["steps"]), f"{m['loop_seconds'] / 60:.1f}",
                 f"{m['images_per_s']:.0f}", f"{m['views_per_s']:.0f}", f"{last['rankme']:.1f}", f"{last['std']:.3f}",
                 f"{last['probe_val_top1']:.2f}%", f"{last['probe_dev_test_top1']:.2f}%",
                 f"{r['knn_dev_test_top1']:.2f}%"]  # fmt: skip
        if recipes:
            recipe = f"`{r['recipe']}`" if r["recipe"] else "as shipped"
            cells = [*cells[:2], recipe, *cells[2:], "**chosen**" if r["chosen"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, help="where the runs go (finished ones are reused)")
    parser.add_argument("--methods", nargs="+", choices=VIEW_METHODS, help=f"default: {' '.join(VIEW_METHODS)}")
    parser.add_argument("--local-crops", nargs="+", type=int, help="default: 0 4")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="default: 10")
    budget.add_argument("--steps", type=int, help="every run gets this many steps (no calibration)")
    parser.add_argument(
        "--recipes", nargs="+", default=[""],
        help='candidate recipes, each a quoted list of pretraining overrides ("": the config as shipped)',
    )  # fmt: skip
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, help="default: 10000")
    parser.add_argument("--smoke", action="store_true", help=f"defaults {SMOKE_DEFAULTS}, tiny runs")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    defaults = SMOKE_DEFAULTS if args.smoke else {"methods": VIEW_METHODS, "local_crops": [0, 4], "minutes": 10.0,
                                                  "held_out": 10000}  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="ssl_methods_"))
    base = [f"data.development={args.held_out}", "trainer.progress=false", *(SMOKE if args.smoke else [])]
    base += args.overrides
    if problem := bad_recipe(args.methods, args.recipes, base):
        parser.exit(2, f"ssl_methods.py: {problem}\n")
    fixed_steps = args.steps is not None
    if fixed_steps and args.steps < 3:
        parser.exit(2, f"ssl_methods.py: --steps {args.steps}: needs at least 3 (a checkpoint at each third)\n")
    calibration = SMOKE_CALIBRATION_STEPS if args.smoke else CALIBRATION_STEPS
    budget = args.steps if fixed_steps else (args.minutes, calibration)
    length = (
        f"{args.steps} steps (no calibration)"
        if fixed_steps
        else f"{args.minutes:g} minutes of this machine (steps from a calibration run)"
    )
    try:  # a task option out of range shows when the task is built: runs finished before it are kept, reused
        record = [
            measured_run(method, local_crops, recipe, runs, base, budget, args.fraction, args.seed)
            for method in args.methods for local_crops in args.local_crops for recipe in args.recipes
        ]  # fmt: skip
    except ssl.BadInput as err:
        parser.exit(2, f"ssl_methods.py: {err}\n")
    mark_chosen(record)
    every = [c for r in record for c in r["checkpoints"]]
    finals = [r["checkpoints"][-1] for r in record]
    rho_all = spearman([c["rankme"] for c in every], [c["probe_dev_test_top1"] for c in every])
    rho_final = spearman([c["rankme"] for c in finals], [c["probe_dev_test_top1"] for c in finals])
    recipes = args.recipes != [""]
    choice = (
        " Recipes: the shipped config with each row's overrides; chosen: the best development-test GAP probe."
        if recipes
        else ""
    )
    body = (
        f"Development split: the last {args.held_out} training images are the test split, every run pretrained on "
        f"the others for {length}; probes and kNN "
        f"with {args.fraction:g} of their labels (seed {args.seed}). The real test set was not opened.{choice}\n\n"
        + "\n".join(table(record, recipes))
        + f"\n\nRankMe vs the {args.fraction:g}-label GAP probe (development test), Spearman's rho: "
        f"{_rho(rho_all)} over all {len(every)} checkpoints, {_rho(rho_final)} over the {len(finals)} final runs."
    )
    kind = "step" if fixed_steps else "wall-clock"
    title = f"View-based methods at one {kind} budget; RankMe vs the probe (benchmarks/ssl_methods.py)"
    summary = {"rho_all_checkpoints": rho_all, "rho_final_runs": rho_final}
    budgets = {"minutes": None if fixed_steps else args.minutes, "steps": args.steps}
    report(title, body, args.smoke, {"held_out": args.held_out, **budgets, "runs": record, **summary}, runs)


if __name__ == "__main__":
    run_main(main)
