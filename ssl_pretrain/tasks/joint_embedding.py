"""The shape BYOL and VICReg share: views of each image (two global crops plus optional local ones, made on the
device by :class:`~ssl_pretrain.tasks.views.MultiCrop`), embedded by the encoder once per resolution and
compared; no labels of any kind, not even surrogate ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..encoders import Encoder
from ..errors import check_option
from .base import PretextTask
from .views import MultiCrop, check_jitter, check_local_crops, multi_crop, per_sample

GLOBAL_VIEWS = 2
# The view options BYOL and VICReg share, named in each one's signature (what the config validates against).
VIEW_OPTIONS = (
    "crop_scale", "flip", "translate", "scale", "rotation", "brightness", "contrast", "saturation", "hue", "erase",
    "local_crops", "local_size", "local_scale",
)  # fmt: skip


class JointEmbeddingTask(PretextTask):
    """Base class. ``make_batch`` gives ``{"global": (2B, C, S, S), "local": (K * B, C, s, s)}`` (view-major;
    ``local`` only with local crops) and the images' indices as targets; :meth:`features_per_sample` runs the
    encoder once per resolution and returns ``(B, V, D)``, the global views first."""

    def __init__(self, encoder: Encoder, views: MultiCrop):
        super().__init__(encoder)
        self.views = views
        self._last_images: torch.Tensor | None = None

    @staticmethod
    def check_widths(**widths: int) -> None:
        for name, width in widths.items():
            check_option(width >= 1, name, f"must be >= 1, got {width}")

    @classmethod
    def make_views(cls, encoder: Encoder, options: dict) -> MultiCrop:
        """The task's :class:`MultiCrop` from the :data:`VIEW_OPTIONS` among ``options`` (its constructor's
        arguments), each checked (an ``OptionError`` names it)."""
        view_options = {
            key: list(options[key]) if key in ("scale", "local_scale") else options[key] for key in VIEW_OPTIONS
        }
        local = {key: view_options.pop(key) for key in ("local_crops", "local_size", "local_scale")}
        check_jitter(**{k: v for k, v in view_options.items() if k != "flip"})
        check_local_crops(**local, image_size=encoder.spec.image_size)
        return multi_crop(encoder.spec.in_channels, encoder.spec.image_size, GLOBAL_VIEWS, **view_options, **local)

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor):
        self._last_images = images[:4].detach()
        return self.views(images), indices

    def features_per_sample(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, V, D)`` features of every view, one encoder pass per resolution."""
        batch = len(inputs["global"]) // GLOBAL_VIEWS
        return torch.cat([per_sample(self.encoder.forward_features(x), batch) for x in inputs.values()], dim=1)

    def previews(self, inputs, targets, outputs):
        """Each row: an image, its global views, then its local views (scaled up to the image size)."""
        if self._last_images is None:
            return {}
        images = self._last_images
        n, size = len(images), images.shape[-1]
        rows = [images[:, None]]
        for x in inputs.values():
            x = x.detach().float()
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="nearest")
            rows.append(per_sample(x, len(targets))[:n])
        return {f"{type(self).__name__.lower()}/image_then_views": torch.cat(rows, dim=1).clamp(0, 1)}
