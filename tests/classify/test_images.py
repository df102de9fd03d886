"""Every odd image file decodes to 8-bit RGB, and every broken one fails with a clear error."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kubik_core.classify.images import ImageError, decode_image, float_array_to_pil, load_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((90, 60))


def test_cmyk_jpeg_becomes_rgb(photo):
    out = decode_image(_encode(photo.convert("CMYK"), "JPEG", quality=95))
    assert out.mode == "RGB" and out.size == photo.size
    assert np.abs(np.asarray(out, float) - np.asarray(photo, float)).mean() < 12


def test_16_bit_png_is_rescaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64 * 16).reshape(16, 64)).astype(np.uint16)
    out = np.asarray(decode_image(_encode(Image.fromarray(ramp), "PNG")))
    assert out.shape == (16, 64, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and len(np.unique(out)) > 200


def test_greyscale_alpha_and_palette_transparency(photo):
    assert decode_image(_encode(photo.convert("L"), "PNG")).mode == "RGB"
    rgba = photo.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited over white
    assert np.asarray(decode_image(_encode(rgba, "PNG"))).min() == 255
    palette = photo.convert("P")
    palette.info["transparency"] = 0
    assert decode_image(_encode(palette, "PNG")).mode == "RGB"


@pytest.mark.parametrize("make, message", [
    (lambda p: b"", "empty file"),
    (lambda p: b"this is not an image", "not an image file"),
    (lambda p: _encode(p, "JPEG")[:400], "truncated or corrupt"),
    (lambda p: _encode(p, "PNG")[:200], "truncated or corrupt"),
])
def test_broken_files_raise_image_error(photo, make, message):
    with pytest.raises(ImageError, match=message):
        decode_image(make(photo), "x.jpg")


def test_load_image_names_missing_file(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_float_arrays_from_comfyui():
    grey = float_array_to_pil(np.full((4, 5, 1), 0.5, np.float32))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (128, 128, 128)
    with pytest.raises(ImageError, match="NaN"):
        float_array_to_pil(np.full((4, 5, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match="shape"):
        float_array_to_pil(np.zeros((0, 5, 3), np.float32))
