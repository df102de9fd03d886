"""Crop each picture to its character before it is embedded.

A whole-frame embedding mixes the character with the background, the pose's framing and the
lighting, so two pictures of one character in different scenes look less alike than they are.
The crop is the bounding box of a mask when one is given (a segmentation of the character),
grown by a margin to a square; otherwise the pack's saliency smart crop (classify.smartcrop),
a centre square, or the whole picture padded to a square.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..classify.smartcrop import center_box, find_crop
from .errors import ConsistencyError

CROP_MODES = ("smart", "center", "none")
MASK_MARGIN = 0.1     # context kept around the mask's box, as a share of its longer side
PAD_GREY = (124, 116, 104)  # close to CLIP's and ImageNet's mean colour: padding reads as "nothing"


@dataclass(frozen=True)
class Crop:
    image: Image.Image            # square RGB
    box: tuple[int, int, int, int]  # left, top, right, bottom in source pixels
    method: str                   # "mask", "saliency", "center", "whole", "center (mask empty)" ...


def _pad_square(image: Image.Image) -> Image.Image:
    side = max(image.size)
    if image.width == image.height:
        return image
    canvas = Image.new("RGB", (side, side), PAD_GREY)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def mask_box(mask: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Square box around the mask's pixels above 0.5 plus a margin, shifted inside the picture
    (clipped where the picture is narrower); None for an empty mask."""
    rows = np.flatnonzero((mask > 0.5).any(axis=1))
    cols = np.flatnonzero((mask > 0.5).any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left)
    side = int(round(side * (1 + 2 * MASK_MARGIN)))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    w, h = min(side, width), min(side, height)
    x0 = int(round(np.clip(cx - w / 2, 0, width - w)))
    y0 = int(round(np.clip(cy - h / 2, 0, height - h)))
    return x0, y0, x0 + w, y0 + h


def crop_character(image: Image.Image, mode: str = "smart", mask: np.ndarray | None = None) -> Crop:
    """The square crop of ``image`` that holds its character (see the module's docstring)."""
    if mode not in CROP_MODES:
        raise ConsistencyError(f"crop: {mode!r} is not one of {', '.join(CROP_MODES)}")
    width, height = image.size
    fallback = ""
    if mask is not None:
        if mask.shape != (height, width):
            raise ConsistencyError(f"mask: size {mask.shape[1]}x{mask.shape[0]} does not match its image "
                                   f"{width}x{height}; give a mask of the image's size")
        box = mask_box(mask, width, height)
        if box is not None:
            return Crop(_pad_square(image.crop(box)), box, "mask")
        fallback = " (mask empty)"
    if mode == "none":
        return Crop(_pad_square(image), (0, 0, width, height), "whole" + fallback)
    found = find_crop(image, aspect=1.0) if mode == "smart" else center_box(width, height, 1.0)
    box = (found.left, found.top, found.right, found.bottom)
    return Crop(image.crop(box), box, found.method + fallback)
