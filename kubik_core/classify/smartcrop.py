"""Saliency-guided cropping: find the object, crop it at the aspect ratio the model wants.

Center crops cut off subjects that sit off-centre (a flower at the edge of a field photo). The
spectral residual method (Hou & Zhang, CVPR 2007) finds "what stands out" from the image's own
frequency spectrum, needs no weights, and runs in a millisecond at 64 px: the log amplitude
spectrum minus its local average is the unexpected part; transformed back it marks salient areas.

The crop covers the region holding most of the saliency mass, plus a margin, grown to the target
aspect ratio and to at least ``min_scale`` of the largest crop that fits, then shifted inside the
image. When the image is blank or its saliency is spread evenly (noise, uniform texture) the crop falls back to
the centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SALIENCY_SIZE = 64


@dataclass(frozen=True)
class CropBox:
    left: int
    top: int
    right: int
    bottom: int
    method: str  # "saliency" or "center"

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


def _blur(array: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(array, radius, mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, rows)


def _box3(array: np.ndarray) -> np.ndarray:
    padded = np.pad(array, 1, mode="edge")
    return sum(padded[dy:dy + array.shape[0], dx:dx + array.shape[1]]
               for dy in range(3) for dx in range(3)) / 9.0


def saliency_map(image: Image.Image) -> np.ndarray:
    """Spectral residual saliency at low resolution (long side 64), values 0..1, image aspect kept."""
    grey = image.convert("L")
    scale = SALIENCY_SIZE / max(grey.size)
    small = grey.resize((max(4, round(grey.width * scale)), max(4, round(grey.height * scale))),
                        Image.Resampling.BILINEAR)
    g = np.asarray(small, dtype=np.float64) / 255.0
    spectrum = np.fft.fft2(g)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amp - _box3(log_amp)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = _blur(saliency, sigma=2.5)
    lo, hi = saliency.min(), saliency.max()
    if not np.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros_like(saliency)
    return (saliency - lo) / (hi - lo)


def saliency_concentration(saliency: np.ndarray) -> float:
    """Share of the saliency mass in the top 10 % of pixels: 0.1 for a flat map, ~0.2 for noise,
    0.25-0.35 for ordinary photos, 0.8 for one object on a plain background."""
    values = np.sort(saliency.ravel())[::-1]
    total = values.sum()
    return float(values[: max(1, len(values) // 10)].sum() / total) if total > 0 else 0.0


def _mass_interval(profile: np.ndarray, keep: float) -> tuple[float, float]:
    """Fractional [start, end) interval holding the central ``keep`` share of a 1-D mass profile."""
    cdf = np.cumsum(profile) / profile.sum()
    tail = (1.0 - keep) / 2
    start = int(np.searchsorted(cdf, tail))
    end = int(np.searchsorted(cdf, 1.0 - tail)) + 1
    return start / len(profile), min(end, len(profile)) / len(profile)


def center_box(width: int, height: int, aspect: float) -> CropBox:
    w, h = _fit(width, height, aspect, 1.0)
    left, top = (width - w) // 2, (height - h) // 2
    return CropBox(left, top, left + w, top + h, "center")


def _fit(width: int, height: int, aspect: float, scale: float) -> tuple[int, int]:
    """Largest (w, h) with w/h = aspect inside width x height, times scale (>= 1 px)."""
    w = min(width, height * aspect) * scale
    return max(1, min(width, round(w))), max(1, min(height, round(w / aspect)))


def find_crop(image: Image.Image, aspect: float = 1.0, keep: float = 0.9, margin: float = 0.15,
              min_scale: float = 0.5, min_concentration: float = 0.2) -> CropBox:
    """Crop box (pixels, right/bottom exclusive) around the salient object at ``aspect`` = w/h."""
    if aspect <= 0 or not np.isfinite(aspect):
        raise ValueError(f"aspect ratio must be positive, got {aspect}")
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError("cannot crop a zero-size image")
    if np.asarray(image.convert("L")).std() < 1.0:  # blank image: nothing to find
        return center_box(width, height, aspect)
    sal = saliency_map(image)
    if saliency_concentration(sal) < min_concentration:  # uniform texture or noise
        return center_box(width, height, aspect)
    # Hou & Zhang's object map keeps what is well above the mean; the faint rest is background.
    objects = np.clip(sal - 2.0 * sal.mean(), 0.0, None)
    if objects.sum() <= 0:
        return center_box(width, height, aspect)
    x0, x1 = _mass_interval(objects.sum(axis=0), keep)
    y0, y1 = _mass_interval(objects.sum(axis=1), keep)
    cx, cy = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height
    w = (x1 - x0) * width * (1 + 2 * margin)
    h = (y1 - y0) * height * (1 + 2 * margin)
    w = max(w, h * aspect)                      # grow the short side to the aspect ratio
    min_w, _ = _fit(width, height, aspect, min_scale)
    max_w, _ = _fit(width, height, aspect, 1.0)
    w = float(np.clip(w, min_w, max_w))
    w_px, h_px = _fit(width, height, aspect, w / max_w)
    left = int(round(np.clip(cx - w_px / 2, 0, width - w_px)))
    top = int(round(np.clip(cy - h_px / 2, 0, height - h_px)))
    return CropBox(left, top, left + w_px, top + h_px, "saliency")


def smart_crop(image: Image.Image, size: tuple[int, int] | None = None, aspect: float | None = None,
               **options) -> tuple[Image.Image, CropBox]:
    """Crop ``image`` to its salient object; resized to ``size`` (w, h) when given."""
    if aspect is None:
        aspect = size[0] / size[1] if size else 1.0
    box = find_crop(image, aspect, **options)
    crop = image.crop((box.left, box.top, box.right, box.bottom))
    if size is not None:
        crop = crop.resize(size, Image.Resampling.BICUBIC)
    return crop, box


class SmartCrop:
    """A PIL -> PIL transform, for use at the head of a torchvision/timm transform pipeline."""

    def __init__(self, aspect: float = 1.0):
        self.aspect = aspect

    def __call__(self, image: Image.Image) -> Image.Image:
        return smart_crop(image, aspect=self.aspect)[0]

    def __repr__(self) -> str:
        return f"SmartCrop(aspect={self.aspect})"
