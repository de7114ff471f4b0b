"""Build the configured encoder and task, turning option errors into config errors."""

from __future__ import annotations

import torch

from .config import Config
from .data import DataInfo
from .encoders import Encoder, build_encoder
from .errors import BadInput, ConfigError, OptionError
from .registry import TASKS
from .tasks import PretextTask
from .utils.precision import announce_precision, configure_cuda
from .utils.rng import seed_everything


def make_encoder(config: Config, info: DataInfo) -> Encoder:
    """The configured backbone for images of ``info``'s channels and size; checks it can take them."""
    return checked_encoder(config.model.backbone, config.model.options, info, "model")


def checked_encoder(backbone: str, options: dict, info: DataInfo, section: str) -> Encoder:
    """``backbone`` with ``options`` for images of ``info``; an option it refuses, or an input size it cannot
    take, is a config error naming ``section`` (``model``, ``finetune.model``)."""
    try:
        encoder = build_encoder(backbone, options, info.channels, info.image_size, info.mean, info.std)
    except OptionError as err:
        raise ConfigError(f"{section}.{err.option}", str(err).split(": ", 1)[1]) from None
    try:
        with torch.no_grad():
            encoder.eval()(torch.zeros(1, info.channels, info.image_size, info.image_size))
        encoder.train()
    except RuntimeError as err:
        raise ConfigError(
            f"{section}.backbone",
            f"{backbone} cannot take {info.image_size} px inputs "
            f"({str(err).splitlines()[0][:120]}); raise data.image_size or set "
            f"{section}.small_input=true",
        ) from None
    return encoder


def make_task(config: Config, encoder: Encoder) -> PretextTask:
    try:
        return TASKS[config.task.name](encoder, **config.task.options)
    except OptionError as err:
        raise ConfigError(f"task.{err.option}", str(err).split(": ", 1)[1]) from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(f"device: {name} requested but CUDA is not available on this machine (use device=cpu or auto)")
    return torch.device(name)


def prepare_device(config: Config) -> torch.device:
    """``config.device`` resolved, with the CUDA settings of ``trainer.cudnn_benchmark`` and ``trainer.tf32``
    applied: every command that runs a model (fine-tuning, probes, kNN, ensembles, Grad-CAM) uses them, as
    pretraining does."""
    device = resolve_device(config.device)
    configure_cuda(device, config.trainer.cudnn_benchmark, config.trainer.tf32)
    return device


def start(config: Config, job: str | None) -> torch.device:
    """What every command that runs a model does first: the device prepared (:func:`prepare_device`), every
    RNG seeded with ``seed``, and, for a ``job`` (``"fine-tuning"``, ...), the numeric path announced."""
    device = prepare_device(config)
    seed_everything(config.seed)
    if job is not None:
        announce_precision(config.trainer.precision, device, job)
    return device
