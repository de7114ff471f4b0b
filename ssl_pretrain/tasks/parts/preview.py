"""Labels drawn onto TensorBoard previews, so a grid shows what each sample is supervised with."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

LABEL_COLOUR = (255, 40, 40)


def draw_labels(image: torch.Tensor, labels: list[tuple[int, int, str]], scale: int = 3) -> torch.Tensor:
    """Upscale ``image (C, H, W)`` in [0, 1] by ``scale`` (nearest) and write each ``(y, x, text)``
    at pixel ``(y, x)`` of the original in red. Returns ``(3, H * scale, W * scale)`` in [0, 1]."""
    rgb = image.detach().float().cpu().clamp(0, 1).expand(3, -1, -1)
    big = rgb.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    canvas = Image.fromarray((big.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for y, x, text in labels:
        draw.text((x * scale + 1, y * scale), text, fill=LABEL_COLOUR, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def label_each(images: torch.Tensor, texts: list[str], scale: int = 3) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 3, H * scale, W * scale)``, ``texts[i]`` in the top-left corner of image i."""
    return torch.stack([draw_labels(image, [(0, 0, text)], scale) for image, text in zip(images, texts, strict=True)])
