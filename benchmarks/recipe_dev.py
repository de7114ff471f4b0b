"""The shipped fine-tuning recipe's choices, made again on a development split of the training images.

    python benchmarks/recipe_dev.py [--runs DIR] [--config multi] [--fraction 0.01] [--seed 0]
                                    [--held-out 10000] [--smoke] [KEY=VALUE ...]
                                    [--decisions head lr steps semi keep control]
                                    [--scratch-models YAML ...] [--scratch-budgets 1 2]

Every option of ``benchmarks/low_label.py``'s recipe that was decided (the head each start is fine-tuned
with, the learning rate, the step budget, how the unlabeled images are used, keeping the last or the best
epoch) is decided here without the test set: with ``data.development=10000`` the last 10k of Fashion-MNIST's
60k training images are the test split, the config is pretrained on the first 50k (a finished run in
``--runs DIR`` is reused), the labels are sampled from those 50k, and the real test set is never opened. Each
candidate is one fine-tuning run with the low-label benchmark's recipe, changed in the one option the decision
is about, from the pretrained encoder and from random initialisation (training from scratch: the control,
whose options are tuned as carefully). A decision's table prints each candidate's validation top-1 (on its
hold-out: 60 images at 1%) and development-test top-1 (10k images), the higher development-test score marked; the
shipped recipe changes only where that lead is larger than the seed-to-seed spread of the low-label figures.
``keep`` compares how far each kept epoch's validation score runs above its development-test score, and what
that does to the pick ``low_label.py`` makes with one hold-out: the frozen best-layer probe (chosen on the same
hold-out) against fine-tuning with its best or its last epoch kept, and the picked one's development-test top-1.
A fine-tuning run finished by an earlier invocation with the same config (its name aside) is read, not trained
again, so further ``--seed`` values or decisions add only the runs they need.
``control`` is about the from-scratch control alone: its architecture (``--scratch-models``, each a
``finetune.model`` mapping; default: the pretrained encoder's) times its step budget (``--scratch-budgets``,
multiples of the fraction's), so the low-label benchmark's control is the strongest design found here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, run_config, run_main  # noqa: E402
from low_label_cells import (  # noqa: E402
    FINETUNE_RECIPE,
    FINETUNE_STEPS,
    HEAD,
    METHOD_NAMES,
    SEMI_AUGMENT,
    SEMI_RECIPES,
    Cell,
    Scores,
    finished_finetuning,
    probe_cells,
    unnamed_config,
)

import ssl_pretrain as ssl  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
GAP_RANDOM_HEAD: list[str] = []  # a random linear head on global average pooling (the default)
HEADS = {"flatten, probe-started": HEAD["pretrained"], "GAP, random": GAP_RANDOM_HEAD}
SMOKE_PRETRAIN = ["data.limit=256", "trainer.max_steps=2", "trainer.batch_size=16"]
SMOKE_FINETUNE = ["finetune.batch_size=8", "probe.max_iter=10"]


def candidates(decision: str, init: str, steps: int, control: dict[str, list[str]]) -> dict[str, list[str]]:
    """``{candidate name: overrides}`` of one decision for one start; the shipped choice is among them.
    ``control``: the ``control`` decision's candidates (see :func:`control_candidates`)."""
    head = HEAD[init]
    if decision == "control":
        return control
    if decision == "head":
        return {name: [f"finetune.steps={steps}", *overrides] for name, overrides in HEADS.items()}
    if decision == "lr":
        return {f"lr {lr}": [f"finetune.steps={steps}", *head, f"finetune.lr={lr}"] for lr in (0.003, 0.01)}
    if decision == "steps":
        return {f"{n} steps": [f"finetune.steps={n}", *head] for n in (steps, 3 * steps)}
    if decision == "semi":
        plain = {"labels only": [f"finetune.steps={steps}", *head]}
        semi = {
            name: [f"finetune.steps={steps}", *head, *recipe, SEMI_AUGMENT] for name, recipe in SEMI_RECIPES.items()
        }
        return plain | semi
    if decision == "keep":
        return {"best epoch": [f"finetune.steps={steps}", *head, "finetune.keep=best", "finetune.test_last_epoch=true"]}
    raise ValueError(decision)


def control_candidates(models: list[str], budgets: list[float], steps: int) -> dict[str, list[str]]:
    """The from-scratch control's architectures (YAML mappings; none: the encoder's own) times its budgets
    (multiples of ``steps``), as ``{name: overrides}``."""
    designs = {model: [f"finetune.model={model}"] for model in models} or {"the encoder's design": []}
    return {
        f"{name}, {round(budget * steps)} steps": [f"finetune.steps={round(budget * steps)}", *overrides]
        for name, overrides in designs.items()
        for budget in budgets
    }


def fine_tune(run: ssl.Run, overrides: list[str], name: str, done: dict) -> dict:
    """One fine-tuning run on the development split; its report as a dict, ``minutes`` its training time. A
    candidate whose resolved config ran already is read, not trained again: from ``done`` (this invocation: the
    shipped choice appears in several decisions) or from a finished ``<name>-*`` run under the encoder's
    ``finetune/`` (an earlier invocation; ``reused`` then)."""
    config = run_config(run.directory, [*overrides, f"finetune.name={name}-{int(time.time() * 1000)}"])
    key = json.dumps(unnamed_config(config.to_dict()), sort_keys=True)
    if key not in done:
        finished = finished_finetuning(run.directory / "finetune", name, config)
        if finished:
            result = json.loads((finished / "finetune.json").read_text())
        else:
            result = ssl.finetune(run, config=config).to_dict()
        done[key] = {**result, "minutes": result["train_seconds"] / 60, "reused": finished is not None}
    return done[key]


def decision_rows(
    decision: str, run: ssl.Run, base: list[str], steps: int, control: dict[str, list[str]], record: list, done: dict
) -> list[str]:
    """Markdown rows of one decision, both starts (``control``: from scratch only); each cell also appended to
    ``record``."""
    rows = []
    for init in ("random",) if decision == "control" else ("pretrained", "random"):
        results = {}
        for name, overrides in candidates(decision, init, steps, control).items():
            keep = [] if decision == "keep" else ["finetune.keep=last"]
            full = [*base, f"finetune.init={init}", *FINETUNE_RECIPE, *keep, *overrides]
            result = fine_tune(run, full, decision, done)
            results[name] = result
            record.append({"decision": decision, "start": init, "candidate": name, "overrides": overrides,
                           "val_top1": result["val_top1"], "dev_test_top1": result["test_top1"],
                           "last_epoch_val_top1": result["val_top1_per_epoch"][-1],
                           "chosen": result["selected"]["chosen"], "minutes": round(result["minutes"], 2),
                           "reused": result["reused"], "diagnostics": result["diagnostics"]})  # fmt: skip
        rows += _rows(decision, init, results)
    return rows


def pick_rows(run: ssl.Run, fraction: float, seed: int, extra: list[str], kept: dict, record: list) -> list[str]:
    """Markdown rows of the pick ``low_label.py`` makes with one hold-out: the frozen best-layer probe (layer and
    ``l2`` chosen on the hold-out fine-tuning validates on) against the ``keep`` decision's pretrained run
    (``kept``: its record cell) with its best or its last epoch kept, picked by its own rule; each pick's
    development-test top-1. The probe and the picks are also appended to ``record``."""
    val_fraction = run_config(run.directory, extra).finetune.val_fraction
    overrides = [*extra, "evaluation.val_folds=1", f"evaluation.val_fraction={val_fraction}"]
    probe = probe_cells(run.directory, fraction, seed, "none", True, overrides)["pretrained"]
    record.append({"decision": "keep", "start": "pretrained", "candidate": "frozen best-layer probe",
                   "setting": probe.setting, "val_top1": probe.val, "dev_test_top1": probe.test,
                   "minutes": round(probe.minutes, 2)})  # fmt: skip
    rows = [
        f"| keep | pretrained | frozen best-layer probe ({probe.note}) | {probe.val:.2f}% | {probe.test:.2f}% | "
        f"the pick's other candidate | {probe.minutes:.1f} |"
    ]
    last_test = kept["diagnostics"]["test_top1_last_epoch"]
    rules = {"best": (kept["val_top1"], kept["dev_test_top1"]), "last": (kept["last_epoch_val_top1"], last_test)}
    names = {METHOD_NAMES["best"]: "the probe", METHOD_NAMES["ft_full"]: "fine-tuning"}
    for rule, (val, test) in rules.items():
        scores = Scores({"best": [probe], "ft_full": [Cell(val, test)]})
        (pick,) = scores.picked()  # low_label.py's own pick, its tie rule included
        rows.append(
            f"| keep | pretrained | the pick, fine-tuning's {rule} epoch kept | {pick.val:.2f}% | "
            f"{pick.test:.2f}% | {names[pick.note]} | |"
        )
        record.append({"decision": "keep", "start": "pretrained", "candidate": f"pick, {rule} epoch kept",
                       "picked": names[pick.note], "dev_test_top1": pick.test})  # fmt: skip
    return rows


def _rows(decision: str, init: str, results: dict[str, dict]) -> list[str]:
    if decision == "keep":
        (result,) = results.values()
        last_val = result["val_top1_per_epoch"][-1]
        last_test = result["diagnostics"]["test_top1_last_epoch"]
        best_gap = result["val_top1"] - result["test_top1"]
        return [
            f"| keep | {init} | best epoch ({result['best_epoch']}) | {result['val_top1']:.2f}% | "
            f"{result['test_top1']:.2f}% | validation - test {best_gap:+.2f} | {_minutes(result)} |",
            f"| keep | {init} | last epoch | {last_val:.2f}% | {last_test:.2f}% | validation - test "
            f"{last_val - last_test:+.2f} | (same run) |",
        ]
    best = max(results, key=lambda name: results[name]["test_top1"])
    return [
        f"| {decision} | {init} | {name} | {r['val_top1']:.2f}% | {r['test_top1']:.2f}% | "
        f"{'**chosen**' if name == best else ''} | {_minutes(r)} |"
        for name, r in results.items()
    ]


def _minutes(result: dict) -> str:
    """A fine-tuning run's minutes cell: its training time, marked when an earlier invocation ran it."""
    return f"{result['minutes']:.1f}" + (" (reused)" if result["reused"] else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, help="where the development pretraining run goes (reused when finished)")
    parser.add_argument("--config", default="multi")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=10000, help="training images held out as the test split")
    decisions = ["head", "lr", "steps", "semi", "keep"]
    parser.add_argument("--decisions", nargs="+", default=decisions, choices=[*decisions, "control"])
    parser.add_argument("--scratch-models", nargs="+", default=[], help="the control decision's architectures")
    parser.add_argument(
        "--scratch-budgets", nargs="+", type=float, default=[1], help="the control decision's step budgets"
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="ssl_recipe_dev_"))
    development = [f"data.development={args.held_out}", "trainer.progress=false"]
    path = runs / f"{args.config}-dev{args.held_out}"
    if not (path / "metrics.json").is_file():
        smoke = SMOKE_PRETRAIN if args.smoke else []
        extra = [f"output_dir={runs}", f"run_name={path.name}", *development, *smoke, *args.overrides]
        ssl.pretrain(CONFIGS / f"{args.config}.yaml", extra)
    run = ssl.Run.open(path)
    base = [*development, f"data.label_fraction={args.fraction}", f"seed={args.seed}"]
    base += [*(SMOKE_FINETUNE if args.smoke else []), *args.overrides]
    steps = 4 if args.smoke else FINETUNE_STEPS.get(args.fraction, FINETUNE_STEPS[1.0])
    record: list[dict] = []
    done: dict[str, dict] = {}  # the runs so far, by resolved config
    lines = ["| decision | start | candidate | validation top-1 | development-test top-1 | | minutes |"]
    lines.append("|---|---|---|---|---|---|---|")
    control = control_candidates(args.scratch_models, args.scratch_budgets, steps)
    for decision in args.decisions:
        lines += decision_rows(decision, run, base, steps, control, record, done)
    if "keep" in args.decisions:  # what keeping the best or the last epoch does to the pick
        kept = next(c for c in record if c["decision"] == "keep" and c["start"] == "pretrained")
        lines += pick_rows(run, args.fraction, args.seed, base, kept, record)
    minutes = run.metrics["train_seconds"] / 60
    body = (
        f"Development split: the last {args.held_out} of the training images are the test split; {args.config} "
        f"pretrained on the others ({minutes:.1f} min, {run.metrics['precision']}); {args.fraction:g} of their "
        f"labels (seed {args.seed}); the low-label recipe ({steps} steps unless the decision is the budget), "
        "each candidate changed in one option (the control's: its architecture and budget). "
        "The real test set was not opened.\n\n" + "\n".join(lines)
    )
    title = "Recipe choices on a development split of the training images (benchmarks/recipe_dev.py)"
    report(title, body, args.smoke, {"held_out": args.held_out, "config": args.config, "cells": record}, runs)


if __name__ == "__main__":
    run_main(main)
