"""The ``ssl-pretrain`` command line, a thin layer over the API. Exit codes: 0 ok, 2 bad input (one line on
stderr), 1 failure.

Evaluation commands are rows of :data:`EVALUATIONS`: a new one is its module (a ``run(config) -> report``
and a ``format(report) -> str``) plus one row here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import __version__
from .config import Config, current_key, load_config
from .errors import BadInput


@dataclass(frozen=True)
class Evaluation:
    """An evaluation command: what it does, the config key whose path may stand in for ``-c``, and its
    runner and formatter as ``module:function`` (imported when the command runs)."""

    help: str
    source_key: str
    run: str
    show: str


EVALUATIONS = {
    "probe": Evaluation(
        "frozen-encoder linear probe (evaluation.encoder=PATH)",
        "evaluation.encoder",
        "ssl_pretrain.evaluation.frozen.probe:run_probe",
        "ssl_pretrain.evaluation.frozen.probe:format_frozen_report",
    ),
    "knn": Evaluation(
        "weighted kNN on frozen features (evaluation.encoder=PATH, knn.k, knn.temperature)",
        "evaluation.encoder",
        "ssl_pretrain.evaluation.frozen.knn:run_knn",
        "ssl_pretrain.evaluation.frozen.probe:format_frozen_report",
    ),
    "finetune": Evaluation(
        "fine-tune encoder + head on labeled data (evaluation.encoder=PATH, finetune.freeze_until, finetune.unlabeled)",
        "evaluation.encoder",
        "ssl_pretrain.evaluation.finetuning.run:run_finetune",
        "ssl_pretrain.evaluation.finetuning.run:format_finetune",
    ),
    "ensemble": Evaluation(
        "combine fine-tuned or probed models (ensemble.members=[...], ensemble.method)",
        "ensemble.members",
        "ssl_pretrain.evaluation.extras.ensemble:run_ensemble",
        "ssl_pretrain.evaluation.extras.ensemble:format_ensemble",
    ),
    "gradcam": Evaluation(
        "Grad-CAM heatmaps, PNG grid + TensorBoard (gradcam.model=PATH, gradcam.layer)",
        "gradcam.model",
        "ssl_pretrain.evaluation.extras.gradcam:run_gradcam",
        "ssl_pretrain.evaluation.extras.gradcam:format_gradcam",
    ),
}


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-pretrain", description="Self-supervised pretraining of image encoders.")
    parser.add_argument("--version", action="version", version=f"ssl-pretrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train an encoder with a pretext task")
    p.add_argument("-c", "--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.max_steps=50")
    p.add_argument("--resume", action="store_true", help="continue the run from checkpoints/last.pt")
    for name, evaluation in EVALUATIONS.items():
        p = sub.add_parser(name, help=evaluation.help)
        p.add_argument("-c", "--config", help="YAML config file (default: the config of the run the model is in)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. probe.layers=all")
    p = sub.add_parser("rank", help="rank runs or checkpoints by RankMe on unlabeled images (no labels read)")
    p.add_argument("-c", "--config", help="YAML config naming the data (default: the first run's config)")
    p.add_argument("items", nargs="+", metavar="PATH|KEY=VALUE", help="run directories, encoder.pt or checkpoints")
    p.add_argument("--snapshots", action="store_true", help="a run directory also stands for its kept checkpoints")
    p.add_argument("--output", help="also write the ranking as JSON to this file")
    p.epilog = "options (--snapshots, --output) go before the paths"
    p = sub.add_parser("embed", help="embed a collection with an encoder (evaluation.encoder=PATH, data.*, embed.*)")
    p.add_argument("-c", "--config", help="YAML config file (default: the config of the run the encoder is in)")
    p.add_argument("--force", action="store_true", help="overwrite finished embeddings in embed.output")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.name=image_folder data.root=DIR")
    p = sub.add_parser("neighbours", help="nearest neighbours and near-duplicates in an embeddings folder")
    p.add_argument("-c", "--config", help="YAML config file (neighbours.* keys)")
    p.add_argument("--force", action="store_true", help="overwrite an existing neighbours.output")
    p.add_argument("embeddings", help="the folder ssl-pretrain embed wrote")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. neighbours.queries=[a.png] neighbours.k=8")
    p = sub.add_parser("export", help="encoder-only weights (encoder.pt + encoder.yaml) or ONNX from a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("out", help="a directory, or a path ending in .pt (.onnx with export.format=onnx)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="export.format=onnx for an ONNX graph")
    p = sub.add_parser("shard", help="write an image folder as WebDataset tar shards (labels from sub-folders)")
    p.add_argument("source", metavar="SRC_FOLDER")
    p.add_argument("pattern", metavar="OUT_PATTERN", help="printf-style shard names, e.g. shards/train-%%06d.tar")
    p.add_argument("--per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    p = sub.add_parser("demo", help="pretrain a DAE on Fashion-MNIST (~5 min on 2 CPU cores), then probe it")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser


def _evaluation_config(args, key: str) -> Config:
    """``-c`` may be left out when the command's model source belongs to a run (a directory holding
    ``config.yaml``): that config gives the defaults (for ``ensemble``, the first member's)."""
    from .evaluation.shared.encoder_source import defaults_for, saved_run_config

    base = None
    given = (o.split("=", 1) for o in args.overrides if "=" in o)
    value = next((text for name, text in given if current_key(name) == key), None)  # probe.encoder too
    if value and key == "ensemble.members":
        members = yaml.safe_load(value)
        value = members[0] if isinstance(members, list) and members and isinstance(members[0], str) else None
    if value:
        base = defaults_for(saved_run_config(value), args.overrides)
    if args.config is None and base is None:
        raise BadInput(f"{args.command}: give -c CONFIG or {key}=PATH inside a run directory (one with config.yaml)")
    return load_config(args.config, args.overrides, base=base)


def run(argv: list[str]) -> int:
    from .train.distributed import world_from_env

    args = _parser().parse_args(argv)
    world = world_from_env()
    if args.command == "pretrain":
        from .train.trainer import pretrain

        if args.config is None:
            raise BadInput("pretrain: -c CONFIG is required (e.g. -c configs/fashion_mnist/dae.yaml)")
        run_dir = pretrain(load_config(args.config, args.overrides), resume=args.resume)
        if world.is_main:
            print(f"run directory: {run_dir}")
        return 0
    if world.distributed:
        if args.command == "demo":
            raise BadInput("demo: runs on one process; start it without torchrun (ssl-pretrain demo)")
        # Only pretraining is data-parallel; evaluation runs whole on rank 0 and the others stand down.
        if not world.is_main:
            return 0
        print(
            f"note: {args.command} runs on one process (rank 0 of {world.size}); the other processes exit",
            file=sys.stderr,
        )
    if args.command in EVALUATIONS:
        evaluation = EVALUATIONS[args.command]
        report = _function(evaluation.run)(_evaluation_config(args, evaluation.source_key))
        print(_function(evaluation.show)(report))
    elif args.command == "rank":
        _rank(args)
    elif args.command == "embed":
        _embed(args)
    elif args.command == "neighbours":
        _neighbours(args)
    elif args.command == "export":
        _export(args)
    elif args.command == "shard":
        from .data.shards import write_shards

        shards, classes = write_shards(Path(args.source).expanduser(), args.pattern, args.per_shard)
        last = len(shards) - 1
        brace = args.pattern.replace("%06d", f"{{000000..{last:06d}}}") if "%06d" in args.pattern else args.pattern
        print(f"{len(shards)} shard(s) written ({shards[0]} .. {shards[-1]}); classes: {', '.join(classes) or 'none'}")
        print(f"pretrain on them with: data.name=shards data.root='{brace}'")
    elif args.command == "demo":
        from .demo import run_demo

        run_demo(args.overrides)
    return 0


def _embed(args) -> None:
    from .api import embed

    summary = embed(config=_evaluation_config(args, "evaluation.encoder"), force=args.force)  # overrides applied
    resumed = f" (continued from image {summary.resumed_from})" if summary.resumed_from else ""
    print(
        f"{summary.rows} embeddings of width {summary.dim} written to {summary.folder}{resumed}; "
        f"{summary.images_per_s:.0f} images/s; {summary.skipped} unreadable file(s) skipped (skipped.txt)\n"
        f"embedded: {summary.source}"
    )
    if summary.projector:
        print(f"projector: tensorboard --logdir {summary.projector}")


def _neighbours(args) -> None:
    from .api import neighbours

    summary = neighbours(args.embeddings, args.overrides, config=args.config, force=args.force)
    groups = f"{summary.groups} near-duplicate group(s) of {summary.duplicate_images} images ({summary.pairs} pairs)"
    print(f"{summary.queries} queries answered; {groups}")
    for path in summary.skipped_queries:
        print(f"skipped (not a readable image): {path}")
    print("written: " + ", ".join(summary.files))


def _export(args) -> None:
    from .encoders.export import export_encoder
    from .evaluation.shared.encoder_source import load_encoder

    config = load_config(None, args.overrides)
    encoder = load_encoder(Path(args.checkpoint))
    if config.export.format == "onnx":
        from .encoders.onnx import export_onnx

        path, difference = export_onnx(encoder, Path(args.out))
        checked = f"onnxruntime matches PyTorch to {difference:.1e}" if difference is not None else "not run"
        print(f"ONNX encoder written to {path} ({checked})")
    else:
        print(f"encoder written to {export_encoder(encoder, Path(args.out))}")


def _rank(args) -> None:
    from .api import rank
    from .evaluation.frozen.label_free import format_ranking, ranking_record
    from .utils.files import atomic_write_bytes

    paths = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    ranked = rank(paths, overrides, config=args.config, snapshots=args.snapshots)
    print(format_ranking(ranked))
    if args.output:
        atomic_write_bytes(Path(args.output), json.dumps(ranking_record(ranked), indent=2).encode())


def main(argv: list[str] | None = None) -> int:
    from .train.trainer import TrainingError

    try:
        return run(sys.argv[1:] if argv is None else argv)
    except BadInput as err:
        print(f"ssl-pretrain: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"ssl-pretrain: training stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ssl-pretrain: interrupted", file=sys.stderr)
        return 130
