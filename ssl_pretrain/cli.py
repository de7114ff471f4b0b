"""The ``ssl-pretrain`` command line. Exit codes: 0 ok, 2 bad input (one line on stderr), 1 failure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .config import Config, load_config, read_yaml
from .errors import BadInput


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-pretrain", description="Self-supervised pretraining of image encoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("pretrain", "train an encoder with a pretext task"),
        ("probe", "frozen-encoder linear probe (probe.encoder=PATH)"),
        ("knn", "weighted kNN on frozen features (probe.encoder=PATH, knn.k, knn.temperature)"),
        ("finetune", "fine-tune encoder + head on labeled data (probe.encoder=PATH, finetune.freeze_until)"),
        ("ensemble", "combine fine-tuned or probed models (ensemble.members=[...], ensemble.method)"),
        ("gradcam", "Grad-CAM heatmaps, PNG grid + TensorBoard (gradcam.model=PATH, gradcam.layer)"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", help="YAML config file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.max_steps=50")
        if name == "pretrain":
            p.add_argument("--resume", action="store_true", help="continue the run from checkpoints/last.pt")
    p = sub.add_parser("export", help="encoder-only weights (encoder.pt + encoder.yaml) from a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("out", help="a directory, or a path ending in .pt")
    p = sub.add_parser("demo", help="pretrain a DAE on Fashion-MNIST (~5 min on 2 CPU cores), then probe it")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser


# The key whose path may stand in for ``-c``: the run it belongs to supplies the defaults.
_SOURCE_KEYS = {
    "probe": "probe.encoder",
    "knn": "probe.encoder",
    "finetune": "probe.encoder",
    "ensemble": "ensemble.members",
    "gradcam": "gradcam.model",
}


def _evaluation_config(args) -> Config:
    """``-c`` may be left out when the command's model source belongs to a run (a directory holding
    ``config.yaml``): that config gives the defaults (for ``ensemble``, the first member's)."""
    from .evaluation.encoder_source import run_dir_of

    key = _SOURCE_KEYS[args.command]
    base = None
    value = next((o.split("=", 1)[1] for o in args.overrides if o.startswith(f"{key}=")), None)
    if value and key == "ensemble.members":
        members = yaml.safe_load(value)
        value = members[0] if isinstance(members, list) and members and isinstance(members[0], str) else None
    if value:
        run = run_dir_of(Path(value).expanduser())
        if run is not None:
            base = read_yaml(run / "config.yaml")
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
    if args.command == "probe":
        from .evaluation.probe import run_probe

        run_probe(_evaluation_config(args))
    elif args.command == "knn":
        from .evaluation.knn import run_knn

        run_knn(_evaluation_config(args))
    elif args.command == "finetune":
        from .evaluation.finetune import run_finetune

        run_finetune(_evaluation_config(args))
    elif args.command == "ensemble":
        from .evaluation.ensemble import run_ensemble

        run_ensemble(_evaluation_config(args))
    elif args.command == "gradcam":
        from .evaluation.gradcam import run_gradcam

        run_gradcam(_evaluation_config(args))
    elif args.command == "export":
        from .evaluation.encoder_source import task_from_checkpoint
        from .train.export import export_encoder

        task, _ = task_from_checkpoint(Path(args.checkpoint))
        print(f"encoder written to {export_encoder(task.encoder, Path(args.out))}")
    elif args.command == "demo":
        from .demo import run_demo

        run_demo(args.overrides)
    return 0


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
