"""Find the encoder a probe should measure: a run directory, an ``encoder.pt`` or a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ...config import DataConfig, read_yaml
from ...data.image_folder import resolved_root
from ...data.labels import labels_digest
from ...encoders import Encoder, encoder_from_spec
from ...encoders.export import load_exported_encoder
from ...errors import BadInput
from ...runs import checkpoint_path
from ...utils.files import FORMAT, load_checkpoint, load_state_strict, safe_torch_load


def run_dir_of(source: Path) -> Path | None:
    """The run directory a source belongs to (it holds config.yaml), if any."""
    for candidate in (source, source.parent, source.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def saved_run_config(source: str | Path) -> dict | None:
    """The saved ``config.yaml`` (a raw mapping) of the run a source belongs to (the run directory, its
    ``encoder.pt`` or a checkpoint): the defaults of an evaluation of it; None outside a run. The CLI and the
    API both find an evaluation's config through this."""
    run = run_dir_of(Path(source).expanduser())
    return read_yaml(run / "config.yaml") if run is not None else None


# data.* keys about the machine or the encoder's input, not about which dataset: they follow a run anywhere
CARRIED_DATA_KEYS = ("num_workers", "decode", "image_size", "channels")


def defaults_for(saved: dict | None, overrides: list[str]) -> dict | None:
    """A run's saved config as the defaults of a command given ``overrides`` (``key=value`` strings): when they
    name another ``data.name``, the run's dataset-specific ``data.*`` keys (root, limit, development, ...) stay
    behind, so the other dataset is read as the command names it (image size and channels follow the run)."""
    if saved is None:
        return None
    named = [value for key, _, value in (o.partition("=") for o in overrides) if key.strip() == "data.name"]
    data = saved.get("data") or {}
    if not named or yaml.safe_load(named[-1]) == data.get("name"):
        return saved
    return {**saved, "data": {key: value for key, value in data.items() if key in CARRIED_DATA_KEYS}}


def encoder_state(task_state: dict, source: str) -> dict:
    """The encoder's entries (``encoder.*``) of a pretext task's ``state_dict``, without the prefix."""
    state = {key[len("encoder.") :]: value for key, value in task_state.items() if key.startswith("encoder.")}
    if not state:
        raise BadInput(f"evaluation.encoder: {source} holds no encoder weights")
    return state


def encoder_from_checkpoint(path: Path) -> Encoder:
    """The encoder of a training checkpoint: built from its stored spec, its weights loaded strictly (the
    pretext task and the run's config are not rebuilt)."""
    ckpt = load_checkpoint(path)
    encoder = encoder_from_spec(ckpt["encoder_spec"])
    spec = ckpt["encoder_spec"]
    load_state_strict(encoder, encoder_state(ckpt["model"], str(path)), path, f"its encoder spec ({spec['backbone']})")
    return encoder


def load_encoder(source: str | Path) -> Encoder:
    """Load the encoder from a run directory, an exported ``encoder.pt`` or a training checkpoint."""
    source = Path(source).expanduser()
    if source.is_dir():
        if (source / "encoder.pt").is_file():
            return load_exported_encoder(source / "encoder.pt")
        if checkpoint_path(source).is_file():
            return encoder_from_checkpoint(checkpoint_path(source))
        raise BadInput(f"evaluation.encoder: {source} holds neither encoder.pt nor checkpoints/last.pt")
    if not source.is_file():
        raise BadInput(f"evaluation.encoder: {source} does not exist")
    content = safe_torch_load(source, "evaluation.encoder")
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return encoder_from_checkpoint(source)
    return load_exported_encoder(source)


SPLIT_RECORD = "data_split.json"
HOLDS_OUT = ("image_folder", "shards")  # datasets whose test split may be cut from data.root


def pretraining_saw_test(source: Path, data: DataConfig) -> tuple[bool | None, str]:
    """Did the pretraining that made the encoder at ``source`` read any test image of ``data``?

    ``(False, why)``, ``(True, why)``, or ``(None, why)`` when it cannot be told (no ``data_split.json``
    beside the encoder, or other data). Held-out splits by path nest, so an encoder pretrained without the
    files held out at fraction ``f`` never saw the test files of a probe at a fraction ``<= f``.
    """
    run = run_dir_of(source)
    path = run / SPLIT_RECORD if run is not None else None
    if path is None or not path.is_file():
        return None, f"unknown: no {SPLIT_RECORD} beside the encoder (pretrained elsewhere or by an older version)"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, f"unknown: {path} is unreadable"
    root = resolved_root(data.root)
    if record.get("dataset") != data.name or (data.name in HOLDS_OUT and record.get("root") != root):
        return None, f"unknown: pretrained on {record.get('dataset')} ({record.get('root')}), evaluated on {data.name}"
    if data.development is not None:
        return _saw_development_test(record.get("development"), data.development)
    if data.name not in HOLDS_OUT:
        return False, f"pretraining read {record.get('pretrain_split')}; the test split is the dataset's own"
    if data.test_root is not None:
        return False, "the test images come from data.test_root, which pretraining does not read"
    fraction = record.get("held_out_fraction")
    if fraction is not None and record.get("labels_sha256") != labels_digest(data.labels):
        return None, "unknown: pretraining held out the test images of another data.labels file (or none)"
    if fraction is None or record.get("pretrain_read_test"):
        return True, "pretraining read every file of data.root, this test split included"
    if data.test_fraction <= fraction:
        return False, f"pretraining skipped the files held out by path at data.test_fraction={fraction:g}"
    return True, (
        f"pretraining held out data.test_fraction={fraction:g} by path, this evaluation tests on "
        f"{data.test_fraction:g}: the difference was seen"
    )


def _saw_development_test(pretrained_with: int | None, evaluated_with: int) -> tuple[bool, str]:
    """Whether the test images of a development split (the last training images) were pretrained on."""
    if pretrained_with is not None and pretrained_with >= evaluated_with:
        return False, f"pretraining left out the last {pretrained_with} training images (data.development)"
    return True, f"pretraining read training images this development split (data.development={evaluated_with}) tests on"


def results_dir(source: Path) -> Path:
    """Where an evaluation of ``source`` writes its report: its run directory, else the folder it is in."""
    run = run_dir_of(source)
    if run is not None:
        return run
    return source if source.is_dir() else source.parent
