"""prepare_images cuts the object out of real images and frames it as the model was trained.

Images come from scikit-image: the horse silhouette (328 x 400, True on background) gives a
real object mask, painted with the astronaut and coffee photographs' pixels.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kubik_core.recon3d.image_input import prepare_images

data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def horse_mask() -> np.ndarray:
    """1 on the horse, 0 on the background, [328, 400] float32."""
    return (~data.horse()).astype(np.float32)


@pytest.fixture(scope="module")
def horse_box(horse_mask) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(horse_mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


@pytest.fixture(scope="module")
def horse_rgba(horse_mask) -> np.ndarray:
    """The coffee photo's pixels where the horse is, alpha = the horse: uint8 [328, 400, 4]."""
    coffee = data.coffee()[:328, :400]
    return np.concatenate([coffee, (horse_mask * 255).astype(np.uint8)[..., None]], axis=-1)


def _object_extent(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """(centre x, centre y, width, height) of the pixels above 0.5, in output pixels."""
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    left, right = cols.min().item(), cols.max().item() + 1
    top, bottom = rows.min().item(), rows.max().item() + 1
    return (left + right) / 2, (top + bottom) / 2, right - left, bottom - top


def _assert_framed(mask: torch.Tensor, size: int, fill: float, source_box) -> None:
    """The object is centred and its longest side is fill * size (to a pixel of resampling)."""
    cx, cy, w, h = _object_extent(mask)
    assert abs(cx - size / 2) <= 1.5 and abs(cy - size / 2) <= 1.5
    assert abs(max(w, h) - fill * size) <= 2.0
    src_w, src_h = source_box[2] - source_box[0], source_box[3] - source_box[1]
    assert min(w, h) / max(w, h) == pytest.approx(min(src_w, src_h) / max(src_w, src_h), abs=0.03)


def test_rgba_uses_alpha_and_frames_the_object(horse_rgba, horse_box):
    prepared = prepare_images(horse_rgba, size=128, fill=0.8)
    assert prepared.pixels.shape == (1, 3, 128, 128) and prepared.pixels.dtype == torch.float32
    assert prepared.masks.shape == (1, 128, 128)
    assert prepared.mask_sources == ["alpha"] and prepared.boxes == [horse_box]
    _assert_framed(prepared.masks[0], 128, 0.8, horse_box)
    # Background is white; the object keeps the photo's colours (coffee is not white).
    background = prepared.masks[0] == 0
    assert torch.allclose(prepared.pixels[0][:, background], torch.ones(1))
    assert prepared.pixels[0][:, prepared.masks[0] > 0.99].mean() < 0.8


def test_rgb_with_mask_matches_rgba(horse_rgba, horse_mask):
    from_alpha = prepare_images(horse_rgba, size=96)
    from_mask = prepare_images(horse_rgba[..., :3], horse_mask, size=96)
    assert from_mask.mask_sources == ["mask"]
    assert from_mask.boxes == from_alpha.boxes
    assert torch.allclose(from_mask.pixels, from_alpha.pixels, atol=1e-5)


def test_mask_overrides_alpha_and_background_colour(horse_rgba, horse_mask):
    square = np.zeros_like(horse_mask)
    square[100:200, 50:150] = 1.0
    prepared = prepare_images(horse_rgba, square, size=64, background=0.0, fill=1.0)
    assert prepared.boxes == [(50, 100, 150, 200)] and prepared.mask_sources == ["mask"]
    assert prepared.masks[0].min() > 0.99          # the square fills the frame exactly
    dark = prepare_images(horse_rgba, size=64, background=0.0)
    assert dark.pixels[0][:, dark.masks[0] == 0].max() == 0.0


def test_plain_background_is_estimated_from_the_border(horse_rgba, horse_box):
    rgba = horse_rgba.astype(np.float32) / 255
    alpha = rgba[..., 3:]
    on_grey = rgba[..., :3] * alpha + np.float32(0.55) * (1 - alpha)
    prepared = prepare_images(on_grey, size=128)
    assert prepared.mask_sources == ["border"]
    left, top, right, bottom = prepared.boxes[0]
    assert max(abs(a - b) for a, b in zip(prepared.boxes[0], horse_box)) <= 3
    assert right - left > 200 and bottom - top > 200
    agreement = (prepared.masks[0] > 0.5) == (prepare_images(horse_rgba, size=128).masks[0] > 0.5)
    assert agreement.float().mean() > 0.97


def test_opaque_rgba_falls_back_to_the_border(horse_rgba, horse_box):
    rgba = horse_rgba.copy()
    rgba[..., :3][horse_rgba[..., 3] == 0] = (0, 255, 0)   # green background, then fully opaque
    rgba[..., 3] = 255
    prepared = prepare_images(rgba, size=64)
    assert prepared.mask_sources == ["border"]
    assert max(abs(a - b) for a, b in zip(prepared.boxes[0], horse_box)) <= 3


def test_busy_photograph_is_framed_whole_with_a_warning(caplog):
    astronaut = data.astronaut()[:, 50:]                       # 512 x 462
    with caplog.at_level("WARNING", logger="kubik_core.recon3d.image_input"):
        prepared = prepare_images(astronaut, size=64, fill=0.5)
    assert prepared.mask_sources == ["whole"] and prepared.boxes == [(0, 0, 462, 512)]
    assert "not a plain background" in caplog.text and "give a mask" in caplog.text
    _assert_framed(prepared.masks[0], 64, 0.5, prepared.boxes[0])


def test_greyscale_image(horse_mask, horse_box):
    camera = data.camera()[:328, :400]
    for grey in (camera, camera[..., None]):
        prepared = prepare_images(grey, horse_mask, size=64)
        assert prepared.pixels.shape == (1, 3, 64, 64)
        assert torch.equal(prepared.pixels[0, 0], prepared.pixels[0, 1])
        assert prepared.boxes == [horse_box]


def test_batch_uint8_and_float_agree(horse_rgba, horse_mask):
    astronaut = np.concatenate([data.astronaut()[:328, :400], (horse_mask * 255).astype(np.uint8)[..., None]], -1)
    batch_u8 = np.stack([horse_rgba, astronaut])
    batch_float = torch.from_numpy(batch_u8).float() / 255     # ComfyUI IMAGE layout [B,H,W,C]
    a, b = prepare_images(batch_u8, size=64), prepare_images(batch_float, size=64)
    assert a.pixels.shape == (2, 3, 64, 64) and a.boxes == b.boxes
    assert torch.allclose(a.pixels, b.pixels, atol=1e-5)
    assert not torch.allclose(a.pixels[0], a.pixels[1])       # each image keeps its own pixels
    # One mask for the whole batch, or one per image.
    shared = prepare_images(batch_float[..., :3], horse_mask, size=64)
    per_image = prepare_images(batch_float[..., :3], np.stack([horse_mask, horse_mask]), size=64)
    assert torch.allclose(shared.pixels, per_image.pixels) and shared.mask_sources == ["mask", "mask"]


def test_object_touching_the_edge_is_padded_with_background(horse_rgba):
    cut = horse_rgba[:, 120:]                       # the horse's head runs off the left edge
    prepared = prepare_images(cut, size=64, fill=0.85)
    assert prepared.boxes[0][0] == 0
    _assert_framed(prepared.masks[0], 64, 0.85, prepared.boxes[0])


def test_empty_mask_is_refused(horse_rgba):
    with pytest.raises(ValueError, match="mask of image 0 is empty"):
        prepare_images(horse_rgba[..., :3], np.zeros((328, 400), np.float32), size=64)
    transparent = horse_rgba.copy()
    transparent[..., 3] = 0
    with pytest.raises(ValueError, match="transparent everywhere"):
        prepare_images(transparent, size=64)
    with pytest.raises(ValueError, match="no object found"):
        prepare_images(np.full((64, 80, 3), 0.3, np.float32), size=64)


def test_nan_and_out_of_range_pixels_are_refused(horse_rgba):
    image = horse_rgba[..., :3].astype(np.float32) / 255
    image[10, 10, 1] = np.nan
    with pytest.raises(ValueError, match="image has 1 NaN/inf"):
        prepare_images(image, size=64)
    with pytest.raises(ValueError, match="0..255 data: pass uint8 or divide by 255"):
        prepare_images(horse_rgba[..., :3].astype(np.float32), size=64)
    mask = np.ones((328, 400), np.float32)
    mask[0, 0] = np.inf
    with pytest.raises(ValueError, match="mask has 1 NaN/inf"):
        prepare_images(horse_rgba[..., :3], mask, size=64)


@pytest.mark.parametrize("shape", [(328, 400, 2), (2, 2, 328, 400, 3), (0, 400, 3)])
def test_wrong_image_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="image"):
        prepare_images(np.zeros(shape, np.uint8), size=64)


def test_wrong_mask_shapes_and_arguments_are_refused(horse_rgba):
    with pytest.raises(ValueError, match=r"mask must be .* matching the image \(1 x 328 x 400\), got shape \(64, 64\)"):
        prepare_images(horse_rgba, np.zeros((64, 64), np.float32), size=64)
    with pytest.raises(ValueError, match="mask must be"):
        prepare_images(horse_rgba, np.ones((3, 328, 400), np.float32), size=64)
    with pytest.raises(ValueError, match="fill"):
        prepare_images(horse_rgba, size=64, fill=0.0)
    with pytest.raises(ValueError, match="size"):
        prepare_images(horse_rgba, size=4)
    with pytest.raises(ValueError, match="uint8"):
        prepare_images(horse_rgba.astype(np.int32), size=64)
