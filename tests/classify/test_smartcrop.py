"""Smart crop finds an off-centre object, keeps the aspect ratio, and falls back to the centre."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kubik_core.classify.smartcrop import SmartCrop, find_crop, saliency_map, smart_crop


def _object_at_right(width=400, height=200):
    rng = np.random.default_rng(0)
    grass = (np.array([110, 150, 80]) + rng.normal(0, 4, (height, width, 3))).clip(0, 255)
    image = Image.fromarray(grass.astype(np.uint8))
    ImageDraw.Draw(image).ellipse((320, 70, 370, 120), fill=(230, 30, 40))
    return image


def test_crop_contains_the_off_centre_object():
    box = find_crop(_object_at_right(), aspect=1.0)
    assert box.method == "saliency"
    assert box.left <= 320 and box.right >= 370 and box.top <= 70 and box.bottom >= 120
    assert box.right - box.left == box.bottom - box.top  # square, as asked
    centre = find_crop(Image.new("RGB", (400, 200), (110, 150, 80)), aspect=1.0)
    assert box.left > centre.left  # a centre crop (100..300) would have cut the object off


def test_saliency_peaks_on_the_object():
    sal = saliency_map(_object_at_right())
    y, x = np.unravel_index(sal.argmax(), sal.shape)
    assert 0.75 < x / sal.shape[1] < 0.97 and 0.25 < y / sal.shape[0] < 0.75


@pytest.mark.parametrize("image", [
    Image.new("RGB", (300, 120), (10, 20, 30)),
    Image.fromarray((np.random.default_rng(1).random((120, 300, 3)) * 255).astype(np.uint8)),
], ids=["blank", "noise"])
def test_no_object_falls_back_to_centre(image):
    box = find_crop(image, aspect=1.0)
    assert box.method == "center" and box.as_list() == [90, 0, 210, 120]


def test_aspect_ratio_and_resize_on_a_real_photo():
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    crop, box = smart_crop(photo, size=(160, 90))
    assert crop.size == (160, 90)
    assert abs((box.right - box.left) / (box.bottom - box.top) - 16 / 9) < 0.02
    assert 0 <= box.left < box.right <= 512 and 0 <= box.top < box.bottom <= 512


def test_transform_and_bad_aspect():
    out = SmartCrop(aspect=0.5)(_object_at_right())
    assert abs(out.width / out.height - 0.5) < 0.02
    with pytest.raises(ValueError, match="aspect ratio must be positive"):
        find_crop(_object_at_right(), aspect=0)
