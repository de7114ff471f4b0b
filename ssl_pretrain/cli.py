"""The ``ssl-pretrain`` command line. Exit codes: 0 ok, 2 bad input (one line on stderr), 1 failure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Config, load_config, read_yaml
from .errors import BadInput


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-pretrain", description="Self-supervised pretraining of image encoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("pretrain", "train an encoder with a pretext task"),
        ("probe", "frozen-encoder linear probe (probe.encoder=PATH)"),
        ("knn", "weighted kNN on frozen features (probe.encoder=PATH, knn.k, knn.temperature)"),
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


def _probe_config(args) -> Config:
    """``-c`` may be left out when ``probe.encoder`` belongs to a run: its config.yaml gives the defaults."""
    from .evaluation.encoder_source import run_dir_of

    base = None
    encoder = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("probe.encoder=")), None)
    if encoder:
        run = run_dir_of(Path(encoder).expanduser())
        if run is not None:
            base = read_yaml(run / "config.yaml")
    if args.config is None and base is None:
        raise BadInput(f"{args.command}: give -c CONFIG or probe.encoder=RUN_DIR (a run directory with config.yaml)")
    return load_config(args.config, args.overrides, base=base)


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pretrain":
        from .train.trainer import pretrain

        if args.config is None:
            raise BadInput("pretrain: -c CONFIG is required (e.g. -c configs/fashion_mnist/dae.yaml)")
        run_dir = pretrain(load_config(args.config, args.overrides), resume=args.resume)
        print(f"run directory: {run_dir}")
    elif args.command == "probe":
        from .evaluation.probe import run_probe

        run_probe(_probe_config(args))
    elif args.command == "knn":
        from .evaluation.knn import run_knn

        run_knn(_probe_config(args))
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
