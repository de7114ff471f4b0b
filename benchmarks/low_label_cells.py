"""What the low-label benchmarks share (``low_label.py``, ``recipe_dev.py``, ``semi_curve.py``,
``ssl_methods.py``, ``supervised_ceiling.py``): the recipes and grids, a result cell, and the cells' runs
(probes, kNN, fine-tuning, each through the public API, finished runs reused)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from common import run_config

import ssl_pretrain as ssl
from ssl_pretrain.config import Config

CONFIGS = Path(__file__).parents[1] / "configs" / "fashion_mnist"
DEFAULT_CONFIGS = ["exemplar", "rotation", "relative_patch", "dae", "multi"]
L2_GRID = "probe.l2=[1e-4,1e-3,1e-2]"
# All the labels on every layer: 60k x ~9k features per fit, so one L2 (the probe's default) for the layers.
L2_LAYERS_ALL_LABELS = "probe.l2=1e-4"
K_GRID = "knn.k=[5,10,20,50]"
# The fine-tuning recipe, the same for a pretrained start and for training from scratch: AdamW at 0.003,
# warm-up + cosine, a step budget per label fraction, the augmentation (crop + flip, or strong) chosen on
# validation. The learning rate, the budget and the head of each start were chosen on a development split of
# the training images (the last 10k of the 60k held out as its test split, the test set never read), where
# benchmarks/recipe_dev.py prints every candidate's figures (its entry in RESULTS.md).
# 1% of the labels: 1800 steps, three times the 600 of the 2026-12-03 tables (recipe_dev.py, 2026-12-04: the
# longer budget won for both starts, training from scratch most).
FINETUNE_STEPS = {0.01: 1800, 0.1: 2000, 1.0: 4000}
# The runs are compared on their validation split (low_label's pick, recipe_dev's decisions, semi_curve's
# column), so it is held out even where a run itself chooses nothing (finetune.validation=always).
FINETUNE_RECIPE = ["finetune.batch_size=64", "finetune.lr=0.003", "finetune.augment=[crop_flip,strong]"]
FINETUNE_RECIPE += ["finetune.validation=always"]
# The head of each start: a pretrained encoder, a linear layer on the flattened last feature map started from
# a linear probe (finetune.head=flatten, finetune.head_init=probe); training from scratch, a random head on
# global average pooling (a probe on random features is a poor start).
HEAD = {"pretrained": ["finetune.head=flatten", "finetune.head_init=probe"], "random": []}
# Semi-supervised fine-tuning (FixMatch) for the --semi-configs and from random initialisation: the same
# steps, two unlabeled images per labeled one, the weak view's pseudo-labels kept above 0.95 confidence, crop +
# flip on the labeled images (the strong view is the unlabeled images'). S4L (--semi-method pretext): the same
# steps, ratio and augmentation, rotation prediction on the labeled and unlabeled images at weight 1 in place
# of pseudo-labels. benchmarks/recipe_dev.py sets the two against labels only on the development split.
SEMI_RECIPES = {
    "fixmatch": ["finetune.unlabeled=fixmatch", "finetune.unlabeled.ratio=2", "finetune.unlabeled.threshold=0.95"],
    "pretext": [
        "finetune.unlabeled=pretext",
        "finetune.unlabeled.ratio=2",
        "finetune.unlabeled.tasks=[{name: rotation}]",
    ],
}
SEMI_NAMES = {"fixmatch": "FixMatch", "pretext": "S4L rotation"}
SEMI_AUGMENT = "finetune.augment=crop_flip"
SMOKE_PRETRAIN = ["data.limit=256", "trainer.max_steps=2", "trainer.batch_size=16"]
SMOKE_STEPS = 4
SMOKE_EVAL = [
    "probe.max_iter=10",
    "probe.layer_dim=256",
    "finetune.batch_size=8",
    f"finetune.steps={SMOKE_STEPS}",
    "finetune.lr=[0.01,0.003]",
]
NO_SCRATCH_LINE = "\n\nSupervised from scratch: not trained in this run (--no-scratch)."
TUNED = ["ft_full", "ft_auto", "semi"]  # the methods that are fine-tuning runs
# What "picked" chooses among (labels only, no unlabeled images), in the order ties go. The best-layer probe's
# candidates include the GAP probe's and were already chosen among by the same rule, so it comes first: a tie
# between the two must not overturn the choice the best-layer probe made.
PICKABLE = ["best", "gap", "ft_full", "ft_auto"]


@dataclass
class Cell:
    """One evaluation: the validation top-1 it was chosen by, its test top-1, what was chosen, minutes.

    ``setting``: a probe's chosen ``{"layer", "l2"}``; ``holdout``: its top-1 on fine-tuning's hold-out, what
    the pick compares when set (see :func:`add_holdout`); ``reused``: a fine-tuning run found finished;
    ``study``: its last study-only pseudo-label check, when it ran one (``finetune.pseudo_label_accuracy``).
    """

    val: float
    test: float
    note: str = ""
    minutes: float = 0.0
    setting: dict = field(default_factory=dict)
    holdout: float | None = None
    reused: bool = False
    study: dict = field(default_factory=dict)

    @property
    def pick_val(self) -> float:
        """The validation top-1 the pick compares: on fine-tuning's hold-out where there is one."""
        return self.val if self.holdout is None else self.holdout


@dataclass
class Scores:
    """``{method: [Cell per seed]}`` for one encoder at one label fraction."""

    cells: dict[str, list[Cell]] = field(default_factory=dict)

    def add(self, method: str, cell: Cell) -> None:
        self.cells.setdefault(method, []).append(cell)

    def picked(self) -> list[Cell]:
        """Per seed, the method with the highest validation top-1 (first of PICKABLE among equals)."""
        seeds = len(next(iter(self.cells.values())))
        picks = []
        for s in range(seeds):
            options = [(m, self.cells[m][s]) for m in PICKABLE if m in self.cells]
            method, cell = max(options, key=lambda mc: mc[1].pick_val)
            picks.append(Cell(cell.pick_val, cell.test, METHOD_NAMES[method], cell.minutes))
        return picks


METHOD_NAMES = {"gap": "GAP probe", "best": "best-layer probe", "ft_full": "fine-tune", "ft_auto": "fine-tune auto"}


def pretrained_run(name: str, runs: Path, overrides: list[str]) -> tuple[Path, str]:
    """The run directory of config ``name`` (pretrained now unless a finished run is there) and how it came."""
    run = runs / name
    if (run / "metrics.json").is_file():
        return run, "reused"
    extra = [f"output_dir={runs}", f"run_name={name}", "trainer.progress=false", *overrides]
    ssl.pretrain(CONFIGS / f"{name}.yaml", extra)
    return run, "pretrained now"


def probe_cells(run: Path, fraction: float, seed: int, controls: str, layers: bool, extra: list[str]) -> dict:
    """``{encoder: Cell}`` of one probe run (GAP, or every layer), its choice made on validation."""
    grid = L2_LAYERS_ALL_LABELS if layers and fraction >= 1 else L2_GRID
    overrides = [f"data.label_fraction={fraction}", f"seed={seed}", grid, f"evaluation.control={controls}", *extra]
    if layers:
        overrides.append("probe.layers=all")
    start = time.perf_counter()
    report = ssl.probe(run, ["trainer.progress=false", *overrides])
    minutes = (time.perf_counter() - start) / 60
    cells = {}
    for encoder, row in report.chosen_rows().items():
        selected = report.selected[encoder]
        note = f"{row['layer']}, l2 {row['l2']:g}" if layers else f"l2 {row['l2']:g}"
        cells[encoder] = Cell(
            selected["val_top1"], row["top1"], note, minutes, {"layer": row["layer"], "l2": row["l2"]}
        )
    return cells


def add_holdout(cell: Cell, run: Path, fraction: float, seed: int, extra: list[str]) -> None:
    """Set ``cell.holdout``: the probe's chosen layer and ``l2`` fitted on the labeled images minus the
    hold-out fine-tuning validates on (same seed and fraction), scored on that hold-out; no test images."""
    layer, l2 = cell.setting["layer"], cell.setting["l2"]
    overrides = [f"data.label_fraction={fraction}", f"seed={seed}", f"probe.layers=[{layer}]", f"probe.l2={l2}"]
    config = run_config(run, [*overrides, *extra])
    config.evaluation.val_fraction = config.finetune.val_fraction  # fine-tuning's hold-out, not the probe's
    cell.holdout = ssl.probe_validation(config=config)[layer]


def knn_cells(run: Path, fraction: float, seed: int, controls: str, extra: list[str]) -> dict:
    overrides = [f"data.label_fraction={fraction}", f"seed={seed}", K_GRID, f"evaluation.control={controls}", *extra]
    report = ssl.knn(run, ["trainer.progress=false", *overrides])
    return {
        encoder: Cell(report.selected[encoder]["val_top1"], row["top1"], f"k {row['k']}")
        for encoder, row in report.chosen_rows().items()
    }


def finetune_cell(
    run: Path,
    fraction: float,
    seed: int,
    init: str,
    freeze: str,
    extra: list[str],
    semi: str | None = None,
    reuse: bool = False,
) -> Cell:
    """One fine-tuning run of ``run``'s encoder (or from scratch: ``init="random"``) with the benchmark's
    recipe, semi-supervised by the method ``semi`` names (a key of ``SEMI_RECIPES``); with ``reuse``, a
    finished run of the same config is read instead of trained again."""
    kind = freeze if semi is None else "semi" if semi == "fixmatch" else f"semi-{semi}"
    prefix = f"lowlabel-{fraction:g}-s{seed}-{init}-{kind}"
    steps = FINETUNE_STEPS.get(fraction, FINETUNE_STEPS[1.0])
    overrides = [f"data.label_fraction={fraction}", f"seed={seed}", f"finetune.init={init}"]
    overrides += [f"finetune.freeze_until={freeze}", f"finetune.steps={steps}", *FINETUNE_RECIPE, *HEAD[init]]
    overrides += [*SEMI_RECIPES[semi], SEMI_AUGMENT] if semi else []
    overrides += [*extra, f"finetune.name={prefix}-{int(time.time() * 1000)}"]
    report, reused = finetune_report(run, prefix, run_config(run, overrides), reuse)
    chosen = report["selected"]["chosen"]
    note = f"{report['protocol']['strategy']}, {chosen['augment']}, epoch {chosen['epoch']}"
    note += "".join(f", {key} {chosen[key]}" for key in ("model", "steps") if key in chosen)  # control candidates
    study = report["diagnostics"].get("pseudo_label_study", [{}])[-1]
    minutes = report["train_seconds"] / 60
    return Cell(report["val_top1"], report["test_top1"], note, minutes, reused=reused, study=study)


def finetune_report(run: Path, prefix: str, config: Config, reuse: bool = True) -> tuple[dict, bool]:
    """``(finetune.json's record, whether it was reused)``: a finished run of ``config`` named ``prefix-*``
    when ``reuse`` finds one, else a new fine-tuning run of ``run``'s encoder."""
    done = finished_finetuning(run / "finetune", prefix, config) if reuse else None
    if done is not None:
        return json.loads((done / "finetune.json").read_text()), True
    return ssl.finetune(run, config=config).to_dict(), False


def finished_finetuning(folder: Path, prefix: str, config: Config) -> Path | None:
    """The newest run ``folder/<prefix>-<clock>`` with a ``finetune.json`` whose saved config is ``config``'s,
    its name aside (names end in a millisecond clock, so the newest sorts last)."""
    wanted = unnamed_config(config.to_dict())
    for candidate in sorted(folder.glob(f"{prefix}-*"), reverse=True):
        saved = candidate / "config.yaml"
        if (candidate / "finetune.json").is_file() and unnamed_config(yaml.safe_load(saved.read_text())) == wanted:
            return candidate
    return None


def unnamed_config(config: dict) -> dict:
    """``config`` as its YAML file reads back, without ``finetune.name``; a run saved before
    ``finetune.validation`` existed held its validation split out always, and reads so."""
    plain = yaml.safe_load(yaml.safe_dump(config))
    plain["finetune"].pop("name")
    plain["finetune"].setdefault("validation", "always")
    return plain


def mean_spread(values: list[float]) -> str:
    """``mean +- std%`` over seeds, ``value%`` for one."""
    if len(values) == 1:
        return f"{values[0]:.2f}%"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}%"


def fmt(cells: list[Cell], minutes: bool = False) -> str:
    """``mean +- std%`` of the test top-1 over seeds (``mean%`` for one), the choice of the first seed."""
    if not cells:
        return "-"
    text = mean_spread([c.test for c in cells])
    notes = sorted({c.note for c in cells if c.note})
    if notes:
        text += f" ({'; '.join(notes)})" if len(notes) <= 2 else f" ({len(notes)} different choices)"
    if minutes:
        text += f", {statistics.mean(c.minutes for c in cells):.1f} min"
    return text


def mean_val(cells: list[Cell]) -> float:
    return statistics.mean(c.val for c in cells)


def mean_test(cells: list[Cell]) -> float:
    return statistics.mean(c.test for c in cells)
