"""ssl_pretrain: self-supervised pretraining of image encoders with pretext tasks built on the device.

The Python API (the ``ssl-pretrain`` command is a thin layer over it):

- ``pretrain(config, overrides) -> Run``: train an encoder with a pretext task;
- ``probe(run)``, ``knn(run)``, ``finetune(run)``: evaluate it; each returns a result object
  (``FrozenReport``, ``FinetuneReport``: typed fields, also readable as the JSON record it writes);
- every other command the same way, ``ssl.<command>(source, overrides, *, config=None, ...)``: one function per
  row of the command table (``ssl_pretrain.commands``), which the command line reads too;
  ``register_command(Command(...))`` adds one;
- ``load_encoder(path)``, ``load_config(config, overrides)``, ``Run.open(path)``;
- ``register_task``, ``register_encoder``, ``register_dataset``, ``register_unlabeled_method``: plug in your
  own (or use the entry point groups ``ssl_pretrain.tasks``, ``ssl_pretrain.encoders``,
  ``ssl_pretrain.datasets``, ``ssl_pretrain.unlabeled_methods``);
- ``PretextTask``, ``Encoder``, ``DatasetSpec``, ``TensorImages``: the classes to build them from;
  ``wrap_trunk(module, ...)``: any ``nn.Module`` as an encoder, to use a pretext task in your own loop.

Errors are ``BadInput`` (and its ``ConfigError``, which names the key). See docs/api.md.

Layers, top to bottom; a module imports only from its own layer or those below (tests/test_layers.py):

1. ``cli``, ``api``, ``commands``: the command table, the command line and the public API;
2. ``train``: the pretraining loop (its online evaluation uses the layer below);
3. ``evaluation``: probes, kNN, fine-tuning, ensembles, Grad-CAM;
4. ``tasks``, ``encoders``, ``data``, ``build``, ``runs``: what is trained, on what;
5. ``utils``, ``config``, ``registry``, ``options``, ``typecheck``, ``errors``: shared helpers.
"""

from . import api
from .api import Run, load_config, load_encoder, near_duplicates, nearest, probe_validation
from .commands import Command, Flag, PathArg, register_command
from .commands.table import BUILT_IN as _BUILT_IN_COMMANDS
from .data import DatasetSpec, TensorImages
from .encoders import Encoder, wrap_trunk
from .errors import BadInput, ConfigError
from .evaluation.shared.reports import FinetuneReport, FrozenReport
from .registry import register_dataset, register_encoder, register_task, register_unlabeled_method
from .tasks import PretextTask

globals().update({name: getattr(api, name) for name in _BUILT_IN_COMMANDS})  # ssl.pretrain, ssl.probe, ...


def __getattr__(name: str):
    """``ssl.<name>`` of a command registered after import or by a plugin (see :mod:`ssl_pretrain.commands`)."""
    return getattr(api, name)


__version__ = "0.2.0"

__all__ = [
    "BadInput",
    "Command",
    "ConfigError",
    "DatasetSpec",
    "Encoder",
    "FinetuneReport",
    "Flag",
    "FrozenReport",
    "PathArg",
    "PretextTask",
    "Run",
    "TensorImages",
    "load_config",
    "load_encoder",
    "near_duplicates",
    "nearest",
    "probe_validation",
    "register_command",
    "register_dataset",
    "register_encoder",
    "register_task",
    "register_unlabeled_method",
    "wrap_trunk",
    *_BUILT_IN_COMMANDS,
]
