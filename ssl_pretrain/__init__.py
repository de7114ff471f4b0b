"""ssl_pretrain: self-supervised pretraining of image encoders with pretext tasks built on the device.

The Python API (the ``ssl-pretrain`` command is a thin layer over it):

- ``pretrain(config, overrides) -> Run``: train an encoder with a pretext task;
- ``probe(run)``, ``knn(run)``, ``finetune(run)``: evaluate it; each returns a result object
  (``FrozenReport``, ``FinetuneReport``: typed fields, also readable as the JSON record it writes);
- ``load_encoder(path)``, ``load_config(config, overrides)``, ``Run.open(path)``;
- ``register_task``, ``register_encoder``, ``register_dataset``, ``register_unlabeled_method``: plug in your
  own (or use the entry point groups ``ssl_pretrain.tasks``, ``ssl_pretrain.encoders``,
  ``ssl_pretrain.datasets``, ``ssl_pretrain.unlabeled_methods``);
- ``PretextTask``, ``Encoder``, ``DatasetSpec``, ``TensorImages``: the classes to build them from;
  ``wrap_trunk(module, ...)``: any ``nn.Module`` as an encoder, to use a pretext task in your own loop.

Errors are ``BadInput`` (and its ``ConfigError``, which names the key). See docs/api.md.

Layers, top to bottom; a module imports only from its own layer or those below (tests/test_layers.py):

1. ``cli``, ``api``, ``demo``: commands and the public API;
2. ``train``: the pretraining loop (its online evaluation uses the layer below);
3. ``evaluation``: probes, kNN, fine-tuning, ensembles, Grad-CAM;
4. ``tasks``, ``encoders``, ``data``, ``build``, ``runs``: what is trained, on what;
5. ``utils``, ``config``, ``registry``, ``options``, ``typecheck``, ``errors``: shared helpers.
"""

from .api import (
    Run,
    embed,
    finetune,
    knn,
    load_config,
    load_encoder,
    near_duplicates,
    nearest,
    neighbours,
    pretrain,
    probe,
    rank,
)
from .data import DatasetSpec, TensorImages
from .encoders import Encoder, wrap_trunk
from .errors import BadInput, ConfigError
from .evaluation.shared.reports import FinetuneReport, FrozenReport
from .registry import register_dataset, register_encoder, register_task, register_unlabeled_method
from .tasks import PretextTask

__version__ = "0.2.0"

__all__ = [
    "BadInput",
    "ConfigError",
    "DatasetSpec",
    "Encoder",
    "FinetuneReport",
    "FrozenReport",
    "PretextTask",
    "Run",
    "TensorImages",
    "embed",
    "finetune",
    "knn",
    "load_config",
    "load_encoder",
    "near_duplicates",
    "nearest",
    "neighbours",
    "pretrain",
    "probe",
    "rank",
    "register_dataset",
    "register_encoder",
    "register_task",
    "register_unlabeled_method",
    "wrap_trunk",
]
