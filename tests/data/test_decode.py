import io

import numpy as np
import pytest
from PIL import Image

from ssl_pretrain.data import decode
from ssl_pretrain.data.decode import decode_image, jpeg_header


def _jpeg(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(out, "JPEG", quality=95)
    return out.getvalue()


def _photo(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], axis=2).astype(np.uint8)


def test_the_frame_header_gives_size_and_components():
    assert jpeg_header(_jpeg(_photo(30, 41))) == (30, 41, 3)
    assert jpeg_header(_jpeg(_photo(17, 9)[..., 0])) == (17, 9, 1)
    assert jpeg_header(_jpeg(_photo(8, 8), "CMYK")) == (8, 8, 4)
    png = io.BytesIO()
    Image.fromarray(_photo(8, 8)).save(png, "PNG")
    for not_a_frame in (png.getvalue(), b"", b"\xff\xd8\xff", b"hello", _jpeg(_photo(8, 8))[:20]):
        assert jpeg_header(not_a_frame) is None


@pytest.mark.parametrize("channels", [1, 3])
def test_jpegs_decode_through_libjpeg_like_pil(channels, monkeypatch):
    data = _jpeg(_photo(30, 41))
    reference = decode._decode_pil(data, 16, channels)
    monkeypatch.setattr(decode, "_decode_pil", lambda *a: pytest.fail("the JPEG went to PIL"))
    fast = decode_image(data, 16, channels)
    assert fast.shape == reference.shape == (channels, 16, 16) and fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - reference.astype(int)).mean() < 2.0


def test_grey_jpegs_become_three_equal_channels(monkeypatch):
    monkeypatch.setattr(decode, "_decode_pil", lambda *a: pytest.fail("the JPEG went to PIL"))
    out = decode_image(_jpeg(_photo(12, 12)[..., 1]), 12, 3)
    assert out.shape == (3, 12, 12) and (out[0] == out[1]).all() and (out[1] == out[2]).all()


def test_what_the_fast_path_declines_goes_to_pil(monkeypatch):
    calls = []
    original = decode._decode_pil
    monkeypatch.setattr(decode, "_decode_pil", lambda *a: calls.append(1) or original(*a))
    assert decode_image(_jpeg(_photo(10, 10), "CMYK"), 8, 3).shape == (3, 8, 8)
    assert decode_image(_jpeg(_photo(10, 10))[:200], 8, 3) is None  # truncated: PIL says it is broken
    assert len(calls) == 2


def test_a_jpeg_bomb_is_refused_from_its_header(monkeypatch):
    data = bytearray(_jpeg(_photo(8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") * 2  # 60k x 60k in the header
    monkeypatch.setattr(decode, "decode_jpeg", lambda *a, **k: pytest.fail("decoded a bomb"))
    assert decode_image(bytes(data), 8, 3) is None
