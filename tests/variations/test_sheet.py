"""The contact sheet: its size from the cells and the label margins, each picture in its cell,
each label drawn in its place (compared with the same text drawn alone)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS
from kubik_core.variations import BaseSettings, VariationError, VariationGrid, contact_sheet, plan_variations
from kubik_core.variations.sheet import BACKGROUND, GAP, INK, font, label_boxes, layout


def _pictures(count, width=64, height=48):
    """Distinct flat-coloured pictures, so each cell can be found again."""
    return [np.full((height, width, 3), (10 * n + 5, 200 - 10 * n, 90), np.uint8) for n in range(count)]


def _label_crop(text: str, box, font_size: int) -> np.ndarray:
    """``text`` drawn alone in a box of the same size, as contact_sheet draws it."""
    left, top, right, bottom = box
    canvas = Image.new("RGB", (right - left, bottom - top), BACKGROUND)
    ImageDraw.Draw(canvas).text(((right - left) // 2, (bottom - top) // 2), text, fill=INK,
                                font=font(font_size), anchor="mm")
    return np.asarray(canvas)


def test_grid_size_cells_and_labels():
    grid = VariationGrid("seed", ("seed 1", "seed 2", "seed 3"), "sampler", ("euler", "dpmpp_2m"))
    pictures = _pictures(6)
    sheet = contact_sheet(pictures, grid)
    sheet_layout = layout(grid, [(64, 48)] * 6)
    assert sheet.shape == (sheet_layout.size[1], sheet_layout.size[0], 3)
    assert sheet_layout.size == (sheet_layout.left + 3 * (64 + GAP) + GAP, sheet_layout.top + 2 * (48 + GAP) + GAP)
    assert sheet_layout.left > 0 and sheet_layout.top > 0
    for index, picture in enumerate(pictures):           # rows of X values, one row per Y value
        x, y = sheet_layout.cell_origin(index % 3, index // 3)
        assert np.array_equal(sheet[y:y + 48, x:x + 64], picture)
    boxes = label_boxes(grid, sheet_layout)
    assert [text for _, text in boxes] == ["seed 1", "seed 2", "seed 3", "euler", "dpmpp_2m"]
    for box, text in boxes:
        left, top, right, bottom = box
        crop = sheet[top:bottom, left:right]
        assert (crop != BACKGROUND).any(), f"label {text!r} is not drawn"
        assert np.array_equal(crop, _label_crop(text, box, sheet_layout.font_size)), f"label {text!r} differs"


def test_one_axis_has_no_row_labels_and_mixed_sizes_are_centred():
    grid = VariationGrid("size", ("64x48", "32x32"), "none", ("",))
    small = np.full((32, 32, 3), 77, np.uint8)
    sheet = contact_sheet([_pictures(1)[0], small], grid)
    sheet_layout = layout(grid, [(64, 48), (32, 32)])
    assert sheet_layout.left == 0 and sheet.shape[1] == 2 * (64 + GAP) + GAP
    x, y = sheet_layout.cell_origin(1, 0)
    assert np.array_equal(sheet[y + 8:y + 40, x + 16:x + 48], small)
    assert (sheet[y:y + 8, x:x + 64] == BACKGROUND).all()


def test_long_labels_are_shortened_to_their_cell():
    grid = VariationGrid("lora", ("a_very_long_lora_file_name_that_cannot_fit_v2",), "none", ("",))
    sheet_layout = layout(grid, [(64, 64)])
    (box, text), = label_boxes(grid, sheet_layout)
    assert text.endswith("…") and len(text) < 20
    left, _, right, _ = font(sheet_layout.font_size).getbbox(text)
    assert right - left <= 64 - 2 * GAP


@pytest.mark.parametrize("count, message", [
    (0, "images: no pictures; connect the VAE Decode"),
    (5, "images: 5 pictures for a 3x2 grid of 6; connect the VAE Decode fed by the same Kubik Variations"),
])
def test_wrong_picture_count_is_one_clear_error(count, message):
    grid = VariationGrid("seed", ("1", "2", "3"), "cfg", ("4", "8"))
    with pytest.raises(VariationError, match="^" + message):
        contact_sheet(_pictures(count), grid)


def test_too_large_a_sheet_is_refused():
    grid = VariationGrid("seed", tuple(str(n) for n in range(8)), "none", ("",))
    with pytest.raises(VariationError, match=r"^images: the sheet would be 16420x\d+ pixels, more than 16384"):
        contact_sheet([np.zeros((8, 2048, 3), np.uint8)] * 8, grid)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.sampled_from(["seed", "steps", "cfg", "sampler", "scheduler", "size"]), st.text(max_size=80))
def test_fuzz_axis_values_are_planned_or_refused_in_one_line(axis, text):
    """Any text on any axis: a plan within the bounds, or a VariationError naming x_values."""
    try:
        plan = plan_variations(BaseSettings(), axis, text, samplers=KSAMPLER_SAMPLERS, schedulers=KSAMPLER_SCHEDULERS)
    except VariationError as exc:
        assert str(exc).startswith("x_values: ") and "\n" not in str(exc)
        return
    assert 1 <= len(plan) <= 64 and plan.grid.columns == len(plan)
