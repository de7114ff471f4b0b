"""Random views of a batch, made on the device with Kornia: the augmentation pipeline every view-based task
shares (Exemplar, BYOL, VICReg) and multi-crop (Caron et al. 2020, SwAV): a few global crops at the image
size plus ``K`` small local crops at a reduced resolution, so the encoder runs once per resolution.

Views are laid out view-major: view ``v`` of image ``i`` is row ``v * B + i``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import kornia.augmentation as K
import torch
from torch import nn

from ...errors import check_option
from ...utils.draws import augment_on_device
from .colour import RandomHueDirect


def view_augmentation(
    channels: int,
    translate: float,
    scale: list[float],
    rotation: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    crop_scale: list[float] | None = None,
    flip: bool = False,
    erase: float = 0.0,
    size: int | None = None,
) -> nn.Sequential:
    """Kornia pipeline with per-sample parameters; colour terms only for 3-channel images.

    ``crop_scale``: first a random resized crop keeping that share of the area (SimCLR's crop) at ``size`` px;
    ``flip``: a random horizontal flip; an affine (``translate`` share of the size, ``scale`` factors,
    ``rotation`` degrees; left out when all three are the identity); photometric jitter; ``erase``: the
    probability of erasing a random rectangle (cutout) last.
    """
    ops: list[nn.Module] = []
    if crop_scale is not None:
        ops.append(K.RandomResizedCrop((size, size), scale=tuple(crop_scale), cropping_mode="resample"))
    if flip:
        ops.append(K.RandomHorizontalFlip())
    if translate > 0 or rotation > 0 or tuple(scale) != (1, 1):
        ops.append(
            K.RandomAffine(
                degrees=rotation, translate=(translate, translate), scale=tuple(scale), p=1.0, padding_mode="reflection"
            )
        )
    if brightness > 0:
        ops.append(K.RandomBrightness((1 - brightness, 1 + brightness), p=1.0))
    if contrast > 0:
        ops.append(K.RandomContrast((1 - contrast, 1 + contrast), p=1.0))
    if channels == 3 and saturation > 0:
        ops.append(K.RandomSaturation((1 - saturation, 1 + saturation), p=1.0))
    if channels == 3 and hue > 0:
        ops.append(RandomHueDirect((-hue, hue), p=1.0))  # Kornia's RandomHue, ~2x faster
    if erase > 0:
        ops.append(K.RandomErasing(scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0.5, p=erase))
    return nn.Sequential(*ops)


def check_jitter(
    translate: float, scale: list[float], brightness: float, contrast: float, saturation: float, hue: float,
    crop_scale: list[float] | None, erase: float, rotation: float = 0.0,
) -> None:  # fmt: skip
    """Every view option in its range, or an ``OptionError`` naming it."""
    check_option(0 <= rotation <= 180, "rotation", f"must be in [0, 180] degrees, got {rotation}")
    check_option(0 <= translate <= 0.5, "translate", f"must be in [0, 0.5], got {translate}")
    check_option(len(scale) == 2 and 0 < scale[0] <= scale[1], "scale", f"must be [low, high] > 0, got {scale}")
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        check_option(0 <= value < 1, name, f"must be in [0, 1), got {value}")
    check_option(0 <= hue <= 0.5, "hue", f"must be in [0, 0.5], got {hue}")
    check_option(_is_share_range(crop_scale), "crop_scale", f"must be [low, high] in (0, 1], or null, got {crop_scale}")
    check_option(0 <= erase <= 1, "erase", f"must be in [0, 1], got {erase}")


def _is_share_range(value: list[float] | None) -> bool:
    return value is None or (len(value) == 2 and 0 < value[0] <= value[1] <= 1)


def local_side(local_size: int | None, image_size: int) -> int:
    """A local crop's side in px: ``local_size``, or by default 4/7 of the image's (16 px of 28), at least 8."""
    return local_size if local_size is not None else max(8, round(image_size * 4 / 7))


def check_local_crops(local_crops: int, local_size: int | None, local_scale: list[float], image_size: int) -> None:
    """The multi-crop options in range, or an ``OptionError`` naming the option."""
    check_option(local_crops >= 0, "local_crops", f"must be >= 0 (0: no local crops), got {local_crops}")
    check_option(
        local_size is None or 4 <= local_size < image_size,
        "local_size",
        f"must be at least 4 px and below the image size ({image_size} px), or null, got {local_size}",
    )
    check_option(_is_share_range(local_scale), "local_scale", f"must be [low, high] in (0, 1], got {local_scale}")
    check_option(
        local_crops > 0 or local_size is None,
        "local_size",
        f"is {local_size} px but local_crops is 0: set local_crops >= 1 for multi-crop, or local_size: null",
    )


class MultiCrop(nn.Module):
    """``views`` global views per image through ``global_views``; ``local_crops`` local ones through
    ``local_views`` (a pipeline that starts with a resized crop to the local size).

    ``(B, C, S, S)`` -> ``{"global": (views * B, C, S, S)}``, plus ``"local": (local_crops * B, C, s, s)``
    when there are local crops; view-major.
    """

    def __init__(self, global_views: nn.Module, views: int, local_views: nn.Module | None, local_crops: int):
        super().__init__()
        self.global_views, self.views = global_views, views
        self.local_views, self.local_crops = local_views, local_crops

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"global": augment_on_device(self.global_views, images.repeat(self.views, 1, 1, 1))}
        if self.local_crops:
            out["local"] = augment_on_device(self.local_views, images.repeat(self.local_crops, 1, 1, 1))
        return out


def per_sample(views: torch.Tensor, batch: int) -> torch.Tensor:
    """View-major rows ``(V * B, ...)`` -> ``(B, V, ...)``: each sample's views together (what a gather across
    processes keeps intact)."""
    return views.unflatten(0, (-1, batch)).transpose(0, 1)


@dataclass(frozen=True)
class ViewOptions:
    """The 13 view options Exemplar, BYOL and VICReg share (each task keeps its own defaults, a
    ``VIEW_DEFAULTS`` instance, and its config keys are these fields: ``task.crop_scale``, ...).

    ``crop_scale``: a random resized crop keeping that share of the area (null: none); ``flip``, ``translate``,
    ``scale``, ``rotation``, ``brightness``, ``contrast``, ``saturation``, ``hue``, ``erase``: the jitter of
    :func:`view_augmentation`; ``local_crops``, ``local_size``, ``local_scale``: multi-crop's extra views.
    """

    crop_scale: list[float] | None = (0.3, 1.0)
    flip: bool = True
    translate: float = 0.0
    scale: list[float] = (1.0, 1.0)
    rotation: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.0
    hue: float = 0.0
    erase: float = 0.0
    local_crops: int = 0
    local_size: int | None = None
    local_scale: list[float] = (0.1, 0.4)

    def given(self, options: dict, image_size: int) -> ViewOptions:
        """These defaults with ``options`` (a task's ``**views``) put in, each checked (an ``OptionError``
        names it)."""
        unknown = sorted(set(options) - {f.name for f in fields(self)})
        check_option(not unknown, unknown[0] if unknown else "", "is not a view option")
        views = replace(self, **options)
        check_jitter(
            views.translate, list(views.scale), views.brightness, views.contrast, views.saturation, views.hue,
            views.crop_scale, views.erase, views.rotation,
        )  # fmt: skip
        check_local_crops(views.local_crops, views.local_size, list(views.local_scale), image_size)
        return views

    def pipelines(self, channels: int, size: int) -> tuple[nn.Sequential, nn.Sequential | None]:
        """``(global, local)`` Kornia pipelines: the global views at ``size`` px, the local ones (None without
        local crops) at :func:`local_side` px, both with the same jitter."""
        jitter = {
            "translate": self.translate, "scale": list(self.scale), "rotation": self.rotation,
            "brightness": self.brightness, "contrast": self.contrast, "saturation": self.saturation, "hue": self.hue,
            "flip": self.flip, "erase": self.erase,
        }  # fmt: skip
        crop = None if self.crop_scale is None else list(self.crop_scale)
        global_views = view_augmentation(channels, crop_scale=crop, size=size, **jitter)
        if not self.local_crops:
            return global_views, None
        local_size = local_side(self.local_size, size)
        return global_views, view_augmentation(channels, crop_scale=list(self.local_scale), size=local_size, **jitter)


def multi_crop(channels: int, size: int, views: int, options: ViewOptions) -> MultiCrop:
    """A :class:`MultiCrop` of ``views`` global views and ``options.local_crops`` local ones."""
    global_views, local_views = options.pipelines(channels, size)
    return MultiCrop(global_views, views, local_views, options.local_crops)
