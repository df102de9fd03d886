"""The contact sheet of a batch: its pictures in a grid, the X labels above the columns and the Y
labels left of the rows.

Pictures of different sizes (a size axis) each sit centred in a cell as large as the largest.
Labels are drawn with the font that ships with Pillow (``ImageFont.load_default``), so the sheet
looks the same on every machine, and are shortened with an ellipsis when they do not fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .plan import MAX_VARIATIONS, VariationError, VariationGrid

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MAX_SHEET_SIDE = 16384          # pixels; a larger sheet would not fit ComfyUI's preview either
GAP = 4                          # pixels between cells


@dataclass(frozen=True)
class SheetLayout:
    """Where everything goes: cell size, margins for the labels, the font size."""
    columns: int
    rows: int
    cell_width: int
    cell_height: int
    left: int        # width of the Y labels' column (0 without a Y axis)
    top: int         # height of the X labels' row (0 without an X axis)
    font_size: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.left + self.columns * (self.cell_width + GAP) + GAP,
                self.top + self.rows * (self.cell_height + GAP) + GAP)

    def cell_origin(self, column: int, row: int) -> tuple[int, int]:
        return (self.left + GAP + column * (self.cell_width + GAP), self.top + GAP + row * (self.cell_height + GAP))


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font at ``size`` pixels (its bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=size)


def _text_width(text: str, face) -> int:
    left, _top, right, _bottom = face.getbbox(text)
    return right - left


def fit_label(text: str, width: int, face) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if _text_width(text, face) <= width:
        return text
    while text and _text_width(text + "…", face) > width:
        text = text[:-1]
    return text + "…" if text else ""


def layout(grid: VariationGrid, sizes: list[tuple[int, int]]) -> SheetLayout:
    """The layout for pictures of ``sizes`` ((width, height) each, in grid order)."""
    cell_width = max(w for w, _ in sizes)
    cell_height = max(h for _, h in sizes)
    font_size = max(12, min(48, cell_height // 10))
    face = font(font_size)
    line = font_size + font_size // 2
    top = line + 2 * GAP if grid.x_axis != "none" else 0
    if grid.y_axis != "none":
        widest = max(_text_width(label, face) for label in grid.y_labels)
        left = min(widest, max(2 * cell_width, 8 * font_size)) + 3 * GAP
    else:
        left = 0
    return SheetLayout(grid.columns, grid.rows, cell_width, cell_height, left, top, font_size)


def contact_sheet(pictures: list[np.ndarray], grid: VariationGrid) -> np.ndarray:
    """The sheet for ``pictures`` (uint8 arrays [H, W, 3], in the batch's order: rows of X values,
    one row per Y value), as a uint8 array [H, W, 3]."""
    cells = grid.columns * grid.rows
    if not pictures:
        raise VariationError("images: no pictures; connect the VAE Decode that the Kubik Variations batch feeds")
    if len(pictures) != cells:
        raise VariationError(f"images: {len(pictures)} pictures for a {grid.columns}x{grid.rows} grid of "
                             f"{cells}; connect the VAE Decode fed by the same Kubik Variations, with a batch "
                             "size of 1 on the empty latent")
    if cells > MAX_VARIATIONS:
        raise VariationError(f"labels: {cells} cells; a sheet holds at most {MAX_VARIATIONS}")
    sheet_layout = layout(grid, [(p.shape[1], p.shape[0]) for p in pictures])
    width, height = sheet_layout.size
    if max(width, height) > MAX_SHEET_SIDE:
        raise VariationError(f"images: the sheet would be {width}x{height} pixels, more than {MAX_SHEET_SIDE}; "
                             "make fewer or smaller variations per sheet")
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    face = font(sheet_layout.font_size)
    for index, picture in enumerate(pictures):
        column, row = index % grid.columns, index // grid.columns
        x, y = sheet_layout.cell_origin(column, row)
        h, w = picture.shape[:2]
        sheet.paste(Image.fromarray(picture, "RGB"),
                    (x + (sheet_layout.cell_width - w) // 2, y + (sheet_layout.cell_height - h) // 2))
    for box, text in label_boxes(grid, sheet_layout):
        left, top, right, bottom = box
        draw.text(((left + right) // 2, (top + bottom) // 2), text, fill=INK, font=face, anchor="mm")
    return np.asarray(sheet)


def label_boxes(grid: VariationGrid, sheet_layout: SheetLayout) -> list[tuple[tuple[int, int, int, int], str]]:
    """Each label as drawn: its box (left, top, right, bottom) and its text, fitted to the box."""
    face = font(sheet_layout.font_size)
    boxes = []
    if grid.x_axis != "none":
        for column, label in enumerate(grid.x_labels):
            x, _ = sheet_layout.cell_origin(column, 0)
            boxes.append(((x, 0, x + sheet_layout.cell_width, sheet_layout.top),
                          fit_label(label, sheet_layout.cell_width - 2 * GAP, face)))
    if grid.y_axis != "none":
        for row, label in enumerate(grid.y_labels):
            _, y = sheet_layout.cell_origin(0, row)
            boxes.append(((0, y, sheet_layout.left, y + sheet_layout.cell_height),
                          fit_label(label, sheet_layout.left - 2 * GAP, face)))
    return boxes
