"""The low-label benchmark: what pretraining buys with 1%, 10% and 100% of Fashion-MNIST's labels.

    python benchmarks/low_label.py [--runs DIR] [--configs exemplar rotation ...] [--fractions 0.01 0.1 1.0]
                                   [--seeds 3] [--seeded-fractions 0.01] [--finetune-fractions 0.01 0.1]
                                   [--semi-configs exemplar] [--semi-method fixmatch|pretext]
                                   [--freeze-points full auto]
                                   [--layer-fractions 0.01 0.1 1.0] [--val-folds 5]
                                   [--folded-fractions 0.01] [--scratch-models YAML ...]
                                   [--scratch-budgets 1 2] [--no-scratch] [--smoke]
                                   [KEY=VALUE ...]

Each config of ``configs/fashion_mnist/`` is pretrained on the 60k training images without labels (a
finished run in ``--runs DIR/<config>`` is reused). Then, for every label fraction and label-sampling seed
(``data.label_fraction``: stratified and nested; ``--seeds`` seeds at the ``--seeded-fractions``, one at
the others), with
the framework's own commands:

- linear probe on global average pooling (GAP) of the last stage, ``probe.l2`` chosen on validation (at
  the ``--folded-fractions``, by ``--val-folds``-fold cross-validation over every labeled image, as for the
  best-layer probe and kNN: ``evaluation.val_folds``);
- linear probe on the best layer: layer and ``probe.l2`` chosen on validation (``probe.layers=all``; with
  every label, the layer only, at the default ``l2``: each fit reads 60k x ~9k features), at the
  ``--layer-fractions`` (all by default);
- weighted kNN on GAP features, ``knn.k`` chosen on validation;
- fine-tuning, full and with the ``auto`` freeze point, epoch and augmentation chosen on validation (at the
  ``--folded-fractions``, whose validation split is small, the last epoch is kept and scored:
  ``finetune.keep=last``, so its validation score is one look, not the best of ~20 noisy ones);
- "picked": whichever of those four the validation split prefers, and its test top-1 (the best-layer probe
  before the GAP probe among equals: its candidates include the GAP probe's, already chosen among). Where
  the probes choose by cross-validation and fine-tuning on its one hold-out, the pick sets them against each
  other on that hold-out: each probe's chosen layer and ``l2`` refitted on the other labeled images and scored
  there (``probe_holdout_scores``), so no method wins by being scored on fewer, luckier images;
- for the ``--semi-configs``: fine-tuning that also learns from the unlabeled training images, by FixMatch or
  (``--semi-method pretext``) by keeping the rotation pretext task on (S4L).

Controls in the same tables: a randomly initialised encoder of the same architecture (probes, kNN), raw
pixels (logistic regression, kNN) and training from scratch (``finetune.init=random``), supervised and
semi-supervised, with the same recipe, budget and candidates as fine-tuning from a pretrained encoder, but
each with its own head (``HEAD``: the one that won for that start on a development split). Its architecture
and budget may be candidates too, chosen on its validation split like the rest: ``--scratch-models`` (each a
``finetune.model`` mapping, e.g. ``"{backbone: vgg11_bn, small_input: true}"``; by default the pretrained
encoder's architecture) and ``--scratch-budgets`` (multiples of the fraction's step budget). Every
validation split is carved from the labeled training images (seeded, stratified); the test set is scored
once per choice. Test figures are mean +- standard deviation over seeds.

``--reuse-finetuning`` takes a finished fine-tuning run whose saved config is the one asked for (its name
aside) instead of training it again: to finish an interrupted benchmark, or to re-pick after a change to the
probes. Its figures and minutes are those it printed; the tables say how many runs were reused.
``--no-scratch`` trains no from-scratch control: to add encoders to a table whose control an earlier run
measured on the same label seeds and recipe (its fine-tuning and FixMatch runs are the dearest of a table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_main  # noqa: E402
from low_label_cells import (  # noqa: E402
    DEFAULT_CONFIGS,
    FINETUNE_STEPS,
    NO_SCRATCH_LINE,
    PICKABLE,
    SEMI_NAMES,
    SEMI_RECIPES,
    SMOKE_EVAL,
    SMOKE_PRETRAIN,
    SMOKE_STEPS,
    TUNED,
    Cell,
    Scores,
    add_holdout,
    finetune_cell,
    fmt,
    knn_cells,
    mean_test,
    mean_val,
    pretrained_run,
    probe_cells,
)


def evaluate(
    runs: dict[str, Path],
    fraction: float,
    seeds: list[int],
    finetune: bool,
    semi: list[str],
    extra: list[str],
    freeze_points: tuple[str, ...] = ("full", "auto"),
    layers: bool = True,
    val_folds: int = 1,
    keep: str = "best",
    reuse: bool = False,
    semi_method: str = "fixmatch",
    scratch_candidates: tuple[str, ...] = (),
    scratch: bool = True,
):
    """``{row name: Scores}`` at one label fraction: every config, then the controls; semi-supervised
    fine-tuning (``semi_method``) for the configs in ``semi`` and from scratch when ``semi`` names any;
    fine-tuning of the pretrained encoders with each of ``freeze_points`` (``full``: nothing frozen,
    ``auto``); the best-layer probe when ``layers``; probes and kNN choose by ``val_folds``-fold
    cross-validation (1: one hold-out; with more and fine-tuning, the probes are also scored on fine-tuning's
    hold-out, for the pick); fine-tuning keeps its best validation epoch or its last (``keep``), finished
    runs reused with ``reuse``; training from scratch (skipped unless ``scratch``) also takes the overrides
    ``scratch_candidates`` (see :func:`scratch_overrides`)."""
    table: dict[str, Scores] = {name: Scores() for name in runs}
    controls = {name: Scores() for name in ("random init", "raw pixels", "supervised from scratch")}
    first = next(iter(runs))
    frozen = [*extra, f"evaluation.val_folds={val_folds}"]
    tuned = [f"finetune.keep={keep}", *extra]  # the fine-tuning runs' overrides

    def tune(run: Path, seed: int, init: str, freeze: str = "null", semi: bool = False) -> Cell:
        overrides = [*tuned, *scratch_candidates] if init == "random" else tuned
        return finetune_cell(run, fraction, seed, init, freeze, overrides, semi_method if semi else None, reuse)

    for seed in seeds:
        for name, run in runs.items():
            control = "all" if name == first else "none"
            gap = probe_cells(run, fraction, seed, control, False, frozen)
            knn = knn_cells(run, fraction, seed, control, frozen)
            table[name].add("gap", gap["pretrained"])
            table[name].add("knn", knn["pretrained"])
            if layers:
                best = probe_cells(run, fraction, seed, "random_init" if name == first else "none", True, frozen)
                table[name].add("best", best["pretrained"])
                if name == first:
                    controls["random init"].add("best", best["random_init"])
            if name == first:
                controls["random init"].add("gap", gap["random_init"])
                controls["random init"].add("knn", knn["random_init"])
                controls["raw pixels"].add("gap", gap["raw_pixels"])
                controls["raw pixels"].add("knn", knn["raw_pixels"])
            if finetune:
                if val_folds > 1:  # the pick then compares probes and fine-tuning on the same hold-out
                    for method in ("gap", "best") if layers else ("gap",):
                        add_holdout(table[name].cells[method][-1], run, fraction, seed, extra)
                if "full" in freeze_points:
                    table[name].add("ft_full", tune(run, seed, "pretrained"))
                if "auto" in freeze_points:
                    table[name].add("ft_auto", tune(run, seed, "pretrained", "auto"))
                if name in semi:
                    table[name].add("semi", tune(run, seed, "pretrained", semi=True))
        if finetune and scratch:
            control = controls["supervised from scratch"]
            control.add("ft_full", tune(runs[first], seed, "random"))
            if semi:
                control.add("semi", tune(runs[first], seed, "random", semi=True))
    return table, controls


def scratch_overrides(models: list[str], budgets: list[float], steps: int) -> list[str]:
    """The from-scratch control's candidates as overrides: ``finetune.model`` (YAML mappings) and
    ``finetune.steps`` (``budgets`` times ``steps``) where more than the default is asked."""
    overrides = [f"finetune.model=[{', '.join(models)}]"] if models else []
    if budgets != [1]:
        overrides.append(f"finetune.steps=[{','.join(str(round(b * steps)) for b in budgets)}]")
    return overrides


def fraction_table(fraction: float, table: dict, controls: dict, semi_method: str = "fixmatch") -> str:
    head = (
        "| encoder | GAP probe | best-layer probe | kNN | fine-tune (full) | fine-tune (auto) | picked on validation "
        f"| fine-tune + unlabeled images ({SEMI_NAMES[semi_method]}) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name, scores in [*table.items(), *controls.items()]:
        c = scores.cells
        picked = scores.picked() if name in table else []
        lines.append(
            f"| {name} | {fmt(c.get('gap', []))} | {fmt(c.get('best', []))} | {fmt(c.get('knn', []))} | "
            f"{fmt(c.get('ft_full', []), minutes=True)} | {fmt(c.get('ft_auto', []), minutes=True)} | {fmt(picked)} "
            f"| {fmt(c.get('semi', []), minutes=True)} |"
        )
    return "\n".join(lines)


def reused_line(table: dict, controls: dict) -> str:
    """How many of the fine-tuning runs in the table were found finished (``--reuse-finetuning``), if any."""
    tuned = [c for s in [*table.values(), *controls.values()] for m in TUNED for c in s.cells.get(m, [])]
    reused = sum(c.reused for c in tuned)
    return f"\n\nFine-tuning runs reused (finished earlier, same config): {reused} of {len(tuned)}." if reused else ""


def verdicts(results: dict[float, tuple[dict, dict]], semi_method: str = "fixmatch") -> list[str]:
    """The issue's targets, read off the tables (the best encoder itself chosen on validation)."""
    lines = []
    for fraction, (table, controls) in results.items():
        scratch = controls["supervised from scratch"].cells.get("ft_full")
        raw = controls["raw pixels"].cells.get("gap")
        if not scratch or not all(s.cells.get("ft_full") for s in table.values()):
            continue
        best = max(table, key=lambda name: mean_val(table[name].picked()))
        picked = table[best].picked()
        line = (
            f"{fraction:g} of the labels: best encoder on validation {best} ({fmt(picked)}), "
            f"{mean_test(picked) - mean_test(scratch):+.2f} points over supervised from scratch ({fmt(scratch)})"
        )
        if raw:
            line += f", {mean_test(picked) - mean_test(raw):+.2f} over raw-pixel logistic regression"
        lines.append(line + ".")
        worse = [n for n, s in table.items() if mean_test(s.cells["ft_full"]) < mean_test(scratch)]
        margins = ", ".join(f"{n} {mean_test(s.cells['ft_full']) - mean_test(scratch):+.2f}" for n, s in table.items())
        lines.append(
            f"  - fine-tuning vs from scratch: {margins}; worse than from scratch: {', '.join(worse) or 'none'}."
        )
    for fraction, (table, _) in results.items():
        if "multi" in table and len(table) > 1:
            others = {n: mean_test(s.picked()) for n, s in table.items() if n != "multi"}
            multi = mean_test(table["multi"].picked())
            lines.append(
                f"{fraction:g} of the labels, picked on validation: multi-task {multi:.2f}% vs single tasks "
                + ", ".join(f"{n} {v:.2f}%" for n, v in others.items())
                + f" (beats every one: {'yes' if all(multi > v for v in others.values()) else 'no'})."
            )
    for fraction, (table, controls) in results.items():
        semi = {n: s.cells["semi"] for n, s in [*table.items(), *controls.items()] if s.cells.get("semi")}
        if semi:
            lines.append(
                f"{fraction:g} of the labels, fine-tuning that also learns from the unlabeled images "
                f"({SEMI_NAMES[semi_method]}): " + ", ".join(f"{n} {fmt(c, minutes=True)}" for n, c in semi.items())
            )
    for fraction, (table, _) in results.items():  # the GAP probe's targets (issue 36: 1% and all labels)
        best = max(table, key=lambda name: mean_val(table[name].cells["gap"]))
        share = "all labels" if fraction >= 1 else f"{fraction:g} of the labels"
        lines.append(f"GAP linear probe, {share}, best config on validation: {best} {fmt(table[best].cells['gap'])}.")
    return lines


def record_of(results: dict[float, tuple[dict, dict]]) -> dict:
    """Every cell as data: ``{fraction: {row: {method: [cell per seed]}}}``, each cell with its choice, its
    validation top-1 (and the hold-out score the pick compared), its test top-1; ``picked`` per encoder."""
    out = {}
    for fraction, (table, controls) in results.items():
        rows = {}
        for name, scores in [*table.items(), *controls.items()]:
            rows[name] = {method: [dataclasses.asdict(c) for c in cells] for method, cells in scores.cells.items()}
            if name in table and any(m in scores.cells for m in PICKABLE):
                rows[name]["picked"] = [dataclasses.asdict(c) for c in scores.picked()]
        out[f"{fraction:g}"] = rows
    return {"fractions": out}


# --smoke without the options below: one encoder, 1% of the labels, one label sample (a couple of minutes)
SMOKE_DEFAULTS = {"configs": ["rotation"], "fractions": [0.01], "seeds": 1}


def parsed_args() -> argparse.Namespace:
    """The command line, with ``--smoke``'s defaults filled in where an option was left at its own."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, help="where the pretraining runs go (finished ones are reused)")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--finetune-fractions", nargs="+", type=float, default=[0.01, 0.1])
    parser.add_argument("--semi-configs", nargs="*", default=[], help="configs also fine-tuned semi-supervised")
    parser.add_argument(
        "--semi-method", choices=list(SEMI_RECIPES), default="fixmatch", help="how the unlabeled images teach"
    )
    parser.add_argument("--seeds", type=int, default=3, help="label-sampling seeds at the --seeded-fractions")
    parser.add_argument("--seeded-fractions", nargs="+", type=float, default=[0.01])
    parser.add_argument(
        "--freeze-points", nargs="+", default=["full", "auto"], choices=["full", "auto"],
        help="fine-tuning of the pretrained encoders: nothing frozen, and/or the auto freeze point",
    )  # fmt: skip
    parser.add_argument(
        "--layer-fractions", nargs="+", type=float, help="label fractions with the best-layer probe (default: all)"
    )
    parser.add_argument("--val-folds", type=int, default=5, help="cross-validation folds of probes and kNN")
    parser.add_argument(
        "--folded-fractions", nargs="+", type=float, default=[0.01],
        help="label fractions where probes and kNN choose by cross-validation and fine-tuning keeps its last "
        "epoch (elsewhere: one hold-out, the best validation epoch)",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-finetuning", action="store_true", help="read finished fine-tuning runs of the same config"
    )
    parser.add_argument(
        "--scratch-models", nargs="+", default=[],
        help="architectures the from-scratch control chooses among on validation, each a finetune.model mapping "
        "(default: the pretrained encoder's)",
    )  # fmt: skip
    parser.add_argument(
        "--scratch-budgets", nargs="+", type=float, default=[1],
        help="step budgets the from-scratch control chooses among, as multiples of the fraction's",
    )  # fmt: skip
    parser.add_argument(
        "--no-scratch", action="store_true",
        help="train no from-scratch control (to add encoders to a table whose control, on the same label seeds and "
        "recipe, an earlier run of this benchmark measured)",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.no_scratch and (args.scratch_models or args.scratch_budgets != parser.get_default("scratch_budgets")):
        parser.exit(2, "low_label.py: --no-scratch with --scratch-models or --scratch-budgets: no control is trained\n")
    for key, value in SMOKE_DEFAULTS.items() if args.smoke else ():
        if getattr(args, key) == parser.get_default(key):
            setattr(args, key, value)
    return args


def pretraining_line(name: str, run: Path, how: str) -> str:
    """One config's pretraining summary: minutes, images seen, images/s (and views/s for view-based tasks)."""
    metrics = json.loads((run / "metrics.json").read_text())
    rate = f"{metrics['images_per_s']:.0f} images/s"
    if metrics.get("views_per_image", 1) > 1:  # view-based tasks: every view is an encoder input
        rate += f", {metrics['views_per_s']:.0f} views/s"
    return f"{name}: {metrics['train_seconds'] / 60:.1f} min, {metrics['images_seen']} images, {rate} ({how})"


def main() -> None:
    args = parsed_args()
    runs_dir = args.runs or Path(tempfile.mkdtemp(prefix="ssl_low_label_"))
    pretrain_overrides = (SMOKE_PRETRAIN if args.smoke else []) + args.overrides
    extra = (SMOKE_EVAL if args.smoke else []) + args.overrides
    start = time.perf_counter()

    runs, made = {}, []
    for name in args.configs:
        runs[name], how = pretrained_run(name, runs_dir, pretrain_overrides)
        made.append(pretraining_line(name, runs[name], how))
    results, sections = {}, []
    for fraction in args.fractions:
        seeds = list(range(args.seeds)) if fraction in args.seeded_fractions else [0]
        finetune = fraction in args.finetune_fractions
        layers = args.layer_fractions is None or fraction in args.layer_fractions
        folded = fraction in args.folded_fractions
        folds, keep = (args.val_folds, "last") if folded else (1, "best")
        steps = SMOKE_STEPS if args.smoke else FINETUNE_STEPS.get(fraction, FINETUNE_STEPS[1.0])
        table, controls = evaluate(
            runs, fraction, seeds, finetune, args.semi_configs, extra, tuple(args.freeze_points), layers, folds, keep,
            args.reuse_finetuning, args.semi_method,
            tuple(scratch_overrides(args.scratch_models, args.scratch_budgets, steps)), not args.no_scratch,
        )  # fmt: skip
        results[fraction] = (table, controls)
        validation = f"{folds}-fold cross-validation" if folds > 1 else "one hold-out"
        paired = "; the pick compares them with fine-tuning on its hold-out" if folds > 1 and finetune else ""
        sections.append(
            f"### {fraction:g} of the labels ({len(seeds)} label seed{'s' if len(seeds) > 1 else ''}; "
            f"probes and kNN choose by {validation}{paired}; fine-tuning keeps its {keep} epoch)\n\n"
            + fraction_table(fraction, table, controls, args.semi_method)
            + reused_line(table, controls)
            + (NO_SCRATCH_LINE if finetune and args.no_scratch else "")
        )
    body = (
        "Pretraining (no labels): "
        + "; ".join(made)
        + "\n\n"
        + "\n\n".join(sections)
        + "\n\n### Targets\n\n"
        + "\n".join(line if line.startswith("  - ") else f"- {line}" for line in verdicts(results, args.semi_method))
        + f"\n\nWhole benchmark: {(time.perf_counter() - start) / 60:.1f} min. Runs: {runs_dir}"
    )
    title = "Low-label benchmark on Fashion-MNIST (benchmarks/low_label.py)"
    report(title, body, args.smoke, record_of(results), runs_dir)


if __name__ == "__main__":
    run_main(main)
