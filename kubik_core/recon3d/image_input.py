"""Cut out, centre and scale input images the way the image-to-3D model saw them in training.

The flow model is conditioned on one object on a plain background, framed so that the object's
longest side covers a fixed share (``fill``) of a square image. Training calls
:func:`prepare_images` on RGBA renders (alpha = object) and inference calls it on user images,
so both see identical framing.

Where the object is, per image, in this order:

1. ``mask`` when given (1 = object, soft values allowed),
2. the alpha channel of a 4-channel image, unless it is fully opaque,
3. an estimate from the image border: the few colours that cover the border are background,
   and background-coloured regions connected to the border are removed. This works for
   renders, product shots and drawings on plain or two-tone backgrounds;
4. a busy photograph (no few colours cover its border) is framed whole, with a logged warning
   that names the fix (a mask or a cut-out); ``mask_sources`` says "whole" for it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Border estimate: colours are binned into a 8x8x8 grid; the most common bins that together
# cover BORDER_COVERAGE of the border are the background colours (at most MAX_BACKGROUND_COLOURS).
MAX_BACKGROUND_COLOURS = 4
BORDER_COVERAGE = 0.9
BACKGROUND_TOLERANCE = 0.1      # max per-channel distance (0..1) to a background colour
MIN_COMPONENT_SHARE = 0.05      # object pieces smaller than this share of the largest are specks

log = logging.getLogger(__name__)


@dataclass
class PreparedImages:
    """Images ready for the image encoder.

    pixels: [B,3,size,size] float32 0..1, the object composited on the background colour.
    masks:  [B,size,size] float32 0..1, the object's mask in the same frame.
    boxes:  per image, the object's box (left, top, right, bottom) in source pixels, exclusive.
    mask_sources: per image, where the mask came from: "mask", "alpha", "border", or "whole"
        (a busy background: the whole picture is the object).
    """
    pixels: torch.Tensor
    masks: torch.Tensor
    boxes: list[tuple[int, int, int, int]]
    mask_sources: list[str]


def prepare_images(image, mask=None, *, size: int, background: float = 1.0,
                   fill: float = 0.85) -> PreparedImages:
    """Cut the object out of each image, centre it and scale its longest side to ``fill * size``.

    ``image``: torch tensor or numpy array, [H,W], [H,W,C] or [B,H,W,C] (ComfyUI's IMAGE layout),
    C in 1 (grey), 3 (RGB), 4 (RGBA); float 0..1 or uint8. ``mask``: [H,W] or [B,H,W] (or B=1 for
    the whole batch), 1 = object. Raises ValueError for empty masks, images with no object found,
    NaN/inf pixels and wrong shapes or value ranges.
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background must be a grey level in 0..1, got {background}")
    images = _as_image_batch(image)
    masks = None if mask is None else _as_mask_batch(mask, images.shape)

    pixels, out_masks, boxes, sources = [], [], [], []
    for i, frame in enumerate(images):
        rgb, alpha = frame[..., :3], (frame[..., 3] if frame.shape[-1] == 4 else None)
        if masks is not None:
            soft, source = masks[i if masks.shape[0] > 1 else 0], "mask"
            if not bool((soft > 0.5).any()):
                raise ValueError(f"mask of image {i} is empty: no pixel above 0.5 marks the object")
        elif alpha is not None and bool((alpha < 1.0 - 0.5 / 255).any()):
            soft, source = alpha, "alpha"
            if not bool((alpha > 0.5).any()):
                raise ValueError(f"image {i}: the alpha channel is transparent everywhere, no object")
        else:
            soft, source = _border_estimate(rgb, i), "border"
            if soft is None:
                soft, source = torch.ones(rgb.shape[:2]), "whole"
        box = _box(soft > 0.5)
        framed_rgb, framed_mask = _frame(rgb, soft, box, size=size, background=background, fill=fill)
        pixels.append(framed_rgb)
        out_masks.append(framed_mask)
        boxes.append(box)
        sources.append(source)
    return PreparedImages(torch.stack(pixels), torch.stack(out_masks), boxes, sources)


def _as_float(array, what: str) -> torch.Tensor:
    """uint8 or bool -> 0..1 float32; float arrays checked for NaN/inf and the 0..1 range."""
    if isinstance(array, np.ndarray):
        array = np.ascontiguousarray(array)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    else:
        tensor = array
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{what} must be a torch tensor or a numpy array, got {type(array).__name__}")
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bool:
        return tensor.float()
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if not tensor.is_floating_point():
        raise ValueError(f"{what} must be float 0..1 or uint8, got dtype {tensor.dtype}")
    tensor = tensor.float()
    if tensor.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(tensor.shape)})")
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{what} has {bad} NaN/inf values; fix the node or file that produced it")
    low, high = float(tensor.min()), float(tensor.max())
    if low < -1e-3 or high > 1.0 + 1e-3:
        raise ValueError(f"{what} values must lie in 0..1 for float data, got {low:.3g}..{high:.3g}"
                         + (" (0..255 data: pass uint8 or divide by 255)" if high > 1.5 else ""))
    return tensor.clamp(0.0, 1.0)


def _as_image_batch(image) -> torch.Tensor:
    shape = tuple(getattr(image, "shape", ()))
    images = _as_float(image, "image")
    if images.ndim == 2:
        images = images[None, :, :, None]
    elif images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must be [H,W], [H,W,C] or [B,H,W,C] with C = 1, 3 or 4, got shape {shape}")
    if min(images.shape[:3]) == 0:
        raise ValueError(f"image is empty (shape {shape})")
    if images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    return images


def _as_mask_batch(mask, image_shape) -> torch.Tensor:
    shape = tuple(getattr(mask, "shape", ()))
    masks = _as_float(mask, "mask")
    if masks.ndim == 2:
        masks = masks[None]
    batch, height, width = image_shape[:3]
    if masks.ndim != 3 or tuple(masks.shape[1:]) != (height, width) or masks.shape[0] not in (1, batch):
        raise ValueError(f"mask must be [H,W] or [B,H,W] matching the image ({batch} x {height} x {width}),"
                         f" got shape {shape}")
    return masks


def _border_estimate(rgb: torch.Tensor, index: int) -> torch.Tensor | None:
    """Object mask of an image on a plain (or few-colour) background, from its border colours;
    None when the border is too busy to be a background."""
    from scipy import ndimage

    pixels = rgb.numpy()
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    bins = np.minimum((border * 8).astype(np.int64), 7) @ np.array([64, 8, 1])
    counts = np.bincount(bins, minlength=512)
    order = np.argsort(counts)[::-1][:MAX_BACKGROUND_COLOURS]
    covered = np.cumsum(counts[order]) / len(border)
    used = int(np.searchsorted(covered, BORDER_COVERAGE) + 1)
    if used > len(order):
        log.warning("image %d: its border is not a plain background (%d colours cover only %.0f%% of "
                    "it), so the whole picture is used; for a better shape give a mask (1 = object) "
                    "or an image with transparency (RGBA)", index, MAX_BACKGROUND_COLOURS, 100 * covered[-1])
        return None
    colours = [np.median(border[bins == b], axis=0) for b in order[:used]]
    near_background = np.zeros(pixels.shape[:2], dtype=bool)
    for colour in colours:
        near_background |= np.abs(pixels - colour).max(axis=-1) < BACKGROUND_TOLERANCE
    # Background = background-coloured regions that touch the border; an object's own
    # background-coloured parts (a white shirt on white) stay object, and holes are filled.
    labels, _ = ndimage.label(near_background)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    obj = ~np.isin(labels, edge_labels[edge_labels > 0])
    obj = ndimage.binary_fill_holes(ndimage.binary_opening(obj, iterations=1))
    pieces, count = ndimage.label(obj)
    if count == 0:
        raise ValueError(f"image {index}: no object found, the whole image looks like its background "
                         "colour; connect a mask (1 = object) or use an RGBA image")
    areas = np.bincount(pieces.ravel())[1:]
    keep = np.flatnonzero(areas >= MIN_COMPONENT_SHARE * areas.max()) + 1
    return torch.from_numpy(np.isin(pieces, keep).astype(np.float32))


def _box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _frame(rgb: torch.Tensor, alpha: torch.Tensor, box, *, size: int, background: float,
           fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite on the background, crop a square around the box centre whose side makes the
    box's longest side ``fill`` of it (padding with background past the image), resize."""
    left, top, right, bottom = box
    side = max(int(np.ceil(max(right - left, bottom - top) / fill)), 1)
    x0 = int(round((left + right - side) / 2))
    y0 = int(round((top + bottom - side) / 2))
    height, width = alpha.shape
    composite = rgb * alpha[..., None] + background * (1.0 - alpha[..., None])
    canvas = torch.full((side, side, 4), background, dtype=torch.float32)
    canvas[..., 3] = 0.0
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0, :3] = composite[sy0:sy1, sx0:sx1]
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0, 3] = alpha[sy0:sy1, sx0:sx1]
    resized = F.interpolate(canvas.permute(2, 0, 1)[None], size=(size, size), mode="bilinear",
                            antialias=side > size, align_corners=False)[0].clamp(0.0, 1.0)
    return resized[:3].contiguous(), resized[3].contiguous()
