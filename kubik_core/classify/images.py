"""Decode any image file into 8-bit RGB, or fail with an error that names the file and the cause.

Real photo collections contain CMYK JPEGs, 16-bit PNGs, greyscale, palette and alpha images,
truncated downloads and zero-byte files. Each decodes to the same RGB layout here; the broken
ones raise ``ImageError`` so that datasets can record and skip them.
"""
from __future__ import annotations

import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps


MAX_FILE_BYTES = 256 * 1024 * 1024  # above any real photo; a larger "image" is not read at all


class ImageError(ValueError):
    """An image that cannot be used: empty, truncated, corrupt or zero-size."""


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Bytes of an image file -> RGB PIL image (alpha composited over white, EXIF rotation applied)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()  # decode now: truncated files fail here, not later in a worker
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: truncated or corrupt image ({exc})") from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name}: zero-size image ({image.width}x{image.height})")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not cost us the pixels
        pass
    return to_rgb(image)


def load_image(path: str | os.PathLike) -> Image.Image:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{path}: is a folder, not an image")
        if not stat.S_ISREG(info.st_mode):  # /dev/zero or a pipe would be read forever
            raise ImageError(f"{path}: not a regular file (a device, pipe or socket)")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageError(f"{path}: file of {info.st_size} bytes is too large for an image "
                             f"(limit {MAX_FILE_BYTES})")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as exc:  # permission denied, an I/O error of the disk
        raise ImageError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    return decode_image(data, str(path))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. 16/32-bit integer and float images are rescaled, not clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode == "F":  # scaled to its finite range; NaN and infinities take its ends
            finite = array[np.isfinite(array)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            array = np.nan_to_num(array, nan=lo, posinf=hi, neginf=lo)
            array = (array - lo) / ((hi - lo) or 1.0) * 255.0
        else:
            top = 65535.0 if array.max() > 255 else 255.0
            array = array / top * 255.0
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
    return image


def pil_to_float_array(image: Image.Image) -> np.ndarray:
    """RGB PIL image -> float32 HxWx3 in 0..1 (ComfyUI's IMAGE layout, one image)."""
    return np.asarray(image, dtype=np.float32) / 255.0


def float_array_to_pil(array: np.ndarray) -> Image.Image:
    """HxWxC float 0..1 (C = 1, 3 or 4) -> RGB PIL image; NaN/inf are rejected."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ImageError(f"expected an HxWxC image with C in 1, 3, 4, got shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise ImageError("image contains NaN or infinite values")
    u8 = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if u8.shape[2] == 1:
        return Image.fromarray(u8[:, :, 0], "L").convert("RGB")
    if u8.shape[2] == 4:
        return to_rgb(Image.fromarray(u8, "RGBA"))
    return Image.fromarray(u8, "RGB")
