"""The shape BYOL and VICReg share: views of each image (two global crops plus optional local ones, made on the
device by :class:`~ssl_pretrain.tasks.parts.views.MultiCrop`), embedded by the encoder once per resolution and
compared; no labels of any kind, not even surrogate ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...encoders import Encoder
from ...errors import check_option
from ..base import PretextTask
from .views import MultiCrop, ViewOptions, multi_crop, per_sample

GLOBAL_VIEWS = 2


class JointEmbeddingTask(PretextTask):
    """Base class. ``make_batch`` gives ``{"global": (2B, C, S, S), "local": (K * B, C, s, s)}`` (view-major;
    ``local`` only with local crops) and the images' indices as targets; :meth:`features_per_sample` runs the
    encoder once per resolution and returns ``(B, V, D)``, the global views first."""

    VIEW_DEFAULTS = ViewOptions()
    option_groups = (VIEW_DEFAULTS,)  # its fields are options too (options.option_signature)

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
        """The task's :class:`MultiCrop` from its ``VIEW_DEFAULTS`` with ``options`` (its ``**views``) put in."""
        views = cls.VIEW_DEFAULTS.given(options, encoder.spec.image_size)
        return multi_crop(encoder.spec.in_channels, encoder.spec.image_size, GLOBAL_VIEWS, views)

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
