"""The command table: every ``ssl-pretrain`` command and ``ssl.<name>`` function is one row here (or one
:func:`register_command` call, or an ``ssl_pretrain.commands`` entry point in your own package)."""

from __future__ import annotations

from ..errors import BadInput
from ..registry import Registry
from .command import Command, Flag, PathArg

# The demo's settings, under the user's overrides.
DEMO_SETTINGS = (
    "data.name=fashion_mnist",
    "task.name=dae",
    "trainer.max_steps=600",
    "trainer.lr=0.002",
    "evaluation.control=random_init",
)

ENCODER = PathArg("encoder", "ENCODER", "a run directory, encoder.pt or checkpoint", key="evaluation.encoder")
CHECKPOINT = PathArg("encoder", "CHECKPOINT", ENCODER.help, key="evaluation.encoder", required=True)
MEMBERS = PathArg("members", "MODEL", "fine-tuning runs or their classifiers", key="ensemble.members", many=True)
MODEL = PathArg("model", "MODEL", "a fine-tuning run, its best.pt, or probe_classifier.pt", key="gradcam.model")
EMBEDDINGS = PathArg("embeddings", "EMBEDDINGS", "the folder embed wrote", key="neighbours.embeddings", required=True)
SOURCES = PathArg("sources", "PATH", "run directories, encoder.pt files or checkpoints", many=True, required=True)
OUT = PathArg("out", "OUT", "a directory, or a path ending in .pt (.onnx with export.format=onnx)", required=True)
FOLDER = PathArg("source", "SRC_FOLDER", "an image folder (labels from its sub-folders)", required=True)
SELECT_SOURCE = PathArg(
    "source",
    "SOURCE",
    "an embeddings folder, or an encoder (run directory, encoder.pt or checkpoint)",
    key="select.source",
)
PATTERN = PathArg("pattern", "OUT_PATTERN", "printf-style shard names, e.g. shards/train-%06d.tar", required=True)


def _row(name: str, help: str, where: str, run: str, show: str, **options) -> Command:
    """A row whose ``run`` and ``show`` are functions of the module ``where`` (relative to the package; ``show``
    may name another module's, ``module:function``)."""
    show = f"ssl_pretrain.{show}" if ":" in show else f"ssl_pretrain.{where}:{show}"
    return Command(name, help, f"ssl_pretrain.{where}:{run}", show, **options)


_EVALUATES = {"config": "from_source", "device": True}
BUILT_IN = {
    row.name: row
    for row in (
        _row("pretrain", "train an encoder with a pretext task", "commands.pretrain", "run_pretrain", "format_run",
             flags=(Flag("resume", "continue the run from checkpoints/last.pt"),), config="required", ranks="all"),
        _row("probe", "frozen-encoder linear probe (probe.layers, probe.l2, evaluation.control)",
             "evaluation.frozen.probe", "run_probe", "format_frozen_report", paths=(ENCODER,),
             job="feature extraction", **_EVALUATES),
        _row("knn", "weighted kNN on frozen features (knn.k, knn.temperature)", "evaluation.frozen.knn", "run_knn",
             "evaluation.frozen.probe:format_frozen_report", paths=(ENCODER,), job="feature extraction", **_EVALUATES),
        _row("finetune", "fine-tune encoder + head on the labels (finetune.freeze_until, finetune.unlabeled)",
             "evaluation.finetuning.run", "run_finetune", "format_finetune", paths=(ENCODER,), job="fine-tuning",
             **_EVALUATES),
        _row("ensemble", "combine fine-tuned or probed models (ensemble.method)", "evaluation.extras.ensemble",
             "run_ensemble", "format_ensemble", paths=(MEMBERS,), **_EVALUATES),
        _row("gradcam", "Grad-CAM heatmaps, PNG grid + TensorBoard (gradcam.layer)", "evaluation.extras.gradcam",
             "run_gradcam", "format_gradcam", paths=(MODEL,), **_EVALUATES),
        _row("embed", "embed a collection with an encoder (data.*, embed.*)", "evaluation.embedding.commands",
             "run_embed", "format_embed", paths=(ENCODER,), job="embedding", **_EVALUATES,
             flags=(Flag("force", "overwrite finished embeddings in embed.output"),)),
        _row("neighbours", "nearest neighbours and near-duplicates in an embeddings folder (neighbours.*)",
             "evaluation.embedding.commands", "run_neighbours", "format_neighbours", paths=(EMBEDDINGS,),
             flags=(Flag("force", "overwrite an existing neighbours.output"),), device=True),
        _row("rank", "rank runs or checkpoints by RankMe on unlabeled images (no labels read)",
             "evaluation.frozen.label_free", "run_rank", "format_ranking", paths=(SOURCES,),
             flags=(Flag("snapshots", "a run directory also stands for its kept checkpoints"),
                    Flag("output", "also write the ranking as JSON to this file", str, None)), **_EVALUATES),
        _row("select", "choose which images to label next (select.budget, select.strategy, data.labels)",
             "evaluation.embedding.select", "run_select", "format_select", paths=(SELECT_SOURCE,), job="embedding",
             **_EVALUATES),
        _row("export", "encoder-only weights (encoder.pt + encoder.yaml), or ONNX with export.format=onnx",
             "commands.export", "run_export", "format_export", paths=(CHECKPOINT, OUT)),
        _row("shard", "write an image folder as WebDataset tar shards (labels from sub-folders)", "commands.shard",
             "run_shard", "format_shards", paths=(FOLDER, PATTERN), config="none",
             flags=(Flag("per_shard", "samples per shard", int, 1000),)),
        _row("demo", "the README's main job: pretrain a DAE on Fashion-MNIST, probe it beside a random encoder",
             "commands.demo", "run_demo", "format_demo", config="overrides", ranks="none", preset=DEMO_SETTINGS),
    )
}  # fmt: skip

COMMANDS = Registry("command", "ssl_pretrain.commands", BUILT_IN)


def register_command(command: Command) -> None:
    """Add ``command`` (a :class:`Command` row) as ``ssl-pretrain <name>`` and ``ssl.<name>``."""
    if not isinstance(command, Command):
        raise BadInput(f"register_command takes a Command row, got {type(command).__name__}")
    COMMANDS.register(command.name, command, f"{command.name!r} ({command.run})")
