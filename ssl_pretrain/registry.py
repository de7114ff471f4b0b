"""The extension points: named pretext tasks, encoders and datasets, built in or added by plugins.

Each registry maps a config name (``task.name``, ``model.backbone``, ``data.name``,
``finetune.unlabeled.method``) to an object: a task class, an encoder factory, a
:class:`~ssl_pretrain.data.DatasetSpec`, a semi-supervised method class. Built-in entries are given as
``"module:attribute"`` and imported the first time they are used. Others come from

- :func:`register_task` / :func:`register_encoder` / :func:`register_dataset` /
  :func:`register_unlabeled_method`, called from your own code;
- Python entry points of the groups ``ssl_pretrain.tasks``, ``ssl_pretrain.encoders``,
  ``ssl_pretrain.datasets`` and ``ssl_pretrain.unlabeled_methods`` in any installed package, discovered on
  first use, so that after ``pip install your-plugin`` a config can say ``task.name: your_task``.

A name may be registered once: a clash, or a plugin that fails to import, is an error naming the plugin.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from .errors import BadInput


class Registry(Mapping):
    """A read-only mapping ``name -> object`` with lazy built-ins and plugins (see the module docstring)."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Any] = dict(builtins)  # an object, or "module:attribute" until first use
        self._origin = {name: "built in" for name in builtins}
        self._plugins_loaded = False

    def register(self, name: str, obj: Any, origin: str = "register call") -> None:
        """Add ``name``; a name that is already taken is refused with both origins named."""
        if not isinstance(name, str) or not name:
            raise BadInput(f"{self.kind} plugin {origin}: the name must be a non-empty string, got {name!r}")
        self._load_plugins()
        if name in self._entries:
            raise BadInput(
                f"{self.kind} plugin {origin}: the name {name!r} is taken ({self._origin[name]}); choose another name"
            )
        self._entries[name] = obj
        self._origin[name] = origin

    def unregister(self, name: str) -> None:
        """Remove an entry added by :meth:`register` (tests, notebooks that redefine a class)."""
        if self._origin.get(name) == "built in":
            raise BadInput(f"{self.kind} {name!r} is built in and cannot be removed")
        self._entries.pop(name, None)
        self._origin.pop(name, None)

    def origin(self, name: str) -> str:
        self._load_plugins()
        return self._origin[name]

    def __getitem__(self, name: str) -> Any:
        self._load_plugins()
        value = self._entries[name]
        if isinstance(value, str):
            module, _, attribute = value.partition(":")
            value = getattr(importlib.import_module(module), attribute)
            self._entries[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def _load_plugins(self) -> None:
        """Import every entry point of the group once; a failing or clashing plugin is one error line."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in metadata.entry_points(group=self.group):
            origin = f"{entry.name!r} ({entry.value}, entry point group {self.group})"
            try:
                obj = entry.load()
            except Exception as err:  # noqa: BLE001 - any import failure of a plugin is reported, named
                self._plugins_loaded = True
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise BadInput(f"{self.kind} plugin {origin} failed to import: {reason}") from None
            self.register(entry.name, obj, origin)


TASKS = Registry(
    "task",
    "ssl_pretrain.tasks",
    {
        "dae": "ssl_pretrain.tasks.dae:DenoisingAutoencoder",
        "exemplar": "ssl_pretrain.tasks.exemplar:Exemplar",
        "relative_patch": "ssl_pretrain.tasks.relative_patch:RelativePatchLocation",
        "rotation": "ssl_pretrain.tasks.rotation:RotationPrediction",
        "multi": "ssl_pretrain.tasks.multi:MultiTask",
        "byol": "ssl_pretrain.tasks.byol:BYOL",
        "vicreg": "ssl_pretrain.tasks.vicreg:VICReg",
    },
)
ENCODERS = Registry(
    "encoder",
    "ssl_pretrain.encoders",
    {
        "small_resnet": "ssl_pretrain.encoders.small_resnet:small_resnet",
        "resnet18": "ssl_pretrain.encoders.torchvision_backbones:resnet18",
        "resnet50": "ssl_pretrain.encoders.torchvision_backbones:resnet50",
        "vgg11_bn": "ssl_pretrain.encoders.torchvision_backbones:vgg11_bn",
        "mobilenet_v2": "ssl_pretrain.encoders.torchvision_backbones:mobilenet_v2",
        "efficientnet_b0": "ssl_pretrain.encoders.torchvision_backbones:efficientnet_b0",
    },
)
DATASETS = Registry(
    "dataset",
    "ssl_pretrain.datasets",
    {
        "fashion_mnist": "ssl_pretrain.data.builtin:FASHION_MNIST",
        "cifar10": "ssl_pretrain.data.builtin:CIFAR10",
        "stl10": "ssl_pretrain.data.builtin:STL10",
        "image_folder": "ssl_pretrain.data.builtin:IMAGE_FOLDER",
        "shards": "ssl_pretrain.data.builtin:SHARDS",
    },
)

UNLABELED_METHODS = Registry(
    "unlabeled method",
    "ssl_pretrain.unlabeled_methods",
    {
        "none": "ssl_pretrain.evaluation.finetuning.unlabeled.base:LabelsOnly",
        "fixmatch": "ssl_pretrain.evaluation.finetuning.unlabeled.fixmatch:FixMatch",
        "pretext": "ssl_pretrain.evaluation.finetuning.unlabeled.s4l:S4L",
    },
)


def _class_origin(name: str, cls: Any) -> str:
    return f"{name!r} ({getattr(cls, '__module__', '?')}.{getattr(cls, '__name__', cls)})"


def register_task(name: str, cls: type) -> None:
    """Make ``cls`` (a :class:`~ssl_pretrain.tasks.PretextTask` subclass) available as ``task.name: name``."""
    TASKS.register(name, cls, _class_origin(name, cls))


def register_encoder(name: str, factory: Any) -> None:
    """Make ``factory(in_channels, *, options...) -> TrunkParts`` available as ``model.backbone: name``."""
    ENCODERS.register(name, factory, f"{name!r} ({getattr(factory, '__module__', '?')})")


def register_dataset(name: str, spec: Any) -> None:
    """Make a :class:`~ssl_pretrain.data.DatasetSpec` available as ``data.name: name``."""
    DATASETS.register(name, spec, f"{name!r} ({getattr(spec, 'description', type(spec).__name__)})")


def register_unlabeled_method(name: str, cls: type) -> None:
    """Make ``cls`` (an :class:`~ssl_pretrain.evaluation.finetuning.unlabeled.UnlabeledMethod` subclass)
    available as ``finetune.unlabeled.method: name``."""
    UNLABELED_METHODS.register(name, cls, _class_origin(name, cls))
