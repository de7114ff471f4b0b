"""Find the encoder a probe should measure: a run directory, an ``encoder.pt`` or a checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..build import make_task
from ..config import build_config
from ..encoders import Encoder, encoder_from_spec
from ..errors import BadInput
from ..runs import checkpoint_path
from ..train.checkpoint import FORMAT, load_checkpoint, load_state_strict, safe_torch_load
from ..train.export import load_exported_encoder


def run_dir_of(source: Path) -> Path | None:
    """The run directory a source belongs to (it holds config.yaml), if any."""
    for candidate in (source, source.parent, source.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def task_from_checkpoint(path: Path):
    """Rebuild the pretext task (encoder + head) saved in a training checkpoint, loaded strictly."""
    ckpt = load_checkpoint(path)
    config = build_config(ckpt["config"])
    task = make_task(config, encoder_from_spec(ckpt["encoder_spec"]))
    load_state_strict(task, ckpt["model"], path, f"its own config ({config.model.backbone} + {config.task.name})")
    return task, ckpt


def load_encoder(source: str | Path) -> Encoder:
    """Load the encoder from a run directory, an exported ``encoder.pt`` or a training checkpoint."""
    source = Path(source).expanduser()
    if source.is_dir():
        if (source / "encoder.pt").is_file():
            return load_exported_encoder(source / "encoder.pt")
        if checkpoint_path(source).is_file():
            return task_from_checkpoint(checkpoint_path(source))[0].encoder
        raise BadInput(f"probe.encoder: {source} holds neither encoder.pt nor checkpoints/last.pt")
    if not source.is_file():
        raise BadInput(f"probe.encoder: {source} does not exist")
    content = safe_torch_load(source, "probe.encoder")
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return task_from_checkpoint(source)[0].encoder
    return load_exported_encoder(source)
