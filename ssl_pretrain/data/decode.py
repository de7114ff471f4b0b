"""Image files to fixed-size uint8 arrays: decode, resize the shorter side, centre-crop.

JPEGs (the bulk of large collections) go through libjpeg-turbo via ``torchvision.io.decode_jpeg``, about
5x faster than PIL at 32 px on this machine's CPU; everything else, and any JPEG the fast path declines
(CMYK, a frame header it cannot read, a decoder error), goes through PIL, which also decides what is
broken. Both paths check the pixel count in the header before decoding (decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile
from torchvision.transforms.v2.functional import resize

try:  # deprecated in torchvision 0.29 in favour of TorchCodec; without it every image goes through PIL
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - a torchvision without its decoders
    decode_jpeg = None

ImageFile.LOAD_TRUNCATED_IMAGES = False

# Frame headers (SOFn) carry the size; C4, C8 and CC are other segments in the same range.
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}


def decode_image(source: Path | bytes, size: int, channels: int) -> np.ndarray | None:
    """``(channels, size, size)`` uint8 from an image file or its bytes, or None for what is not a readable
    image (truncated, empty, not an image, unreadable permissions) or would decode to more than
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (a decompression bomb, found from the header)."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError:
        return None
    fast = _decode_jpeg(data, size, channels)
    return fast if fast is not None else _decode_pil(data, size, channels)


def jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """``(height, width, components)`` from a JPEG's frame header, or None (not a JPEG, no frame header
    before the image data, or a truncated header)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _JPEG_STANDALONE:
            i += 2
        elif marker in _JPEG_FRAMES:
            if i + 10 > len(data):
                return None
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return height, width, data[i + 9]
        elif marker in (0xDA, 0xD9):  # image data or the end before any frame header
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _decode_jpeg(data: bytes, size: int, channels: int) -> np.ndarray | None:
    """The libjpeg-turbo path for grey and YCbCr JPEGs within the pixel limit; None hands over to PIL."""
    if not device_decodable(data):
        return None
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except RuntimeError:
        return None  # PIL decides whether it is broken
    return _fit(image, size).numpy()


def _fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(C, H, W)`` uint8 -> ``(C, size, size)``: shorter side to ``size`` (antialiased bilinear, as PIL's),
    then the centre."""
    h, w = image.shape[-2:]
    if (h, w) == (size, size):
        return image
    new_w, new_h, left, top = _shorter_side_box(w, h, size)
    image = resize(image, [new_h, new_w], antialias=True)
    return image[:, top : top + size, left : left + size].contiguous()


def _shorter_side_box(w: int, h: int, size: int) -> tuple[int, int, int, int]:
    """``(new_w, new_h, left, top)``: the size with the shorter side at ``size``, and the centre crop's corner."""
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def _decode_pil(data: bytes, size: int, channels: int) -> np.ndarray | None:
    try:
        with warnings.catch_warnings():  # the epoch's skip count is the one warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                    return None
                img.load()
                img = _to_mode(img, channels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError):
        return None
    new_w, new_h, left, top = _shorter_side_box(*img.size, size)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    img = img.crop((left, top, left + size, top + size))
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 256.0).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("L" if channels == 1 else "RGB")


def device_decodable(data: bytes) -> bool:
    """Whether ``data`` is a JPEG the device decoder takes (grey or YCbCr, within the pixel limit)."""
    header = jpeg_header(data) if decode_jpeg is not None else None
    if header is None:
        return False
    height, width, components = header
    return components in (1, 3) and 0 < height * width <= (Image.MAX_IMAGE_PIXELS or float("inf"))


def decode_jpegs(encoded: list[torch.Tensor], size: int, channels: int, device: torch.device) -> list:
    """JPEG bytes (1-D uint8 tensors) decoded on ``device`` in one batched call (nvJPEG on CUDA), each
    fitted to ``(channels, size, size)`` there; None for one that fails to decode."""
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        images = decode_jpeg(encoded, mode=mode, device=device)
    except RuntimeError:  # one bad member fails the batch: decode one by one to find it
        images = []
        for data in encoded:
            try:
                images.append(decode_jpeg(data, mode=mode, device=device))
            except RuntimeError:
                images.append(None)
    return [None if image is None else _fit(image, size) for image in images]
