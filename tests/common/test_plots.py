"""kubik_core.common.plots: PNGs drawn headless, written atomically, figures closed."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from kubik_core.common.plots import pyplot, save_figure


def test_a_figure_becomes_a_png_and_is_closed(tmp_path):
    plt = pyplot()
    assert plt.get_backend().lower() == "agg"
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [3, 1, 2])
    target = tmp_path / "runs" / "loss.png"                 # the folder is created
    assert save_figure(fig, str(target)) == target
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert not plt.fignum_exists(fig.number)
    assert os.listdir(target.parent) == ["loss.png"]        # no temporary left beside it


def test_a_figure_that_cannot_be_drawn_keeps_the_old_png(tmp_path):
    target = tmp_path / "loss.png"
    target.write_bytes(b"old png")
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.set_title(r"$\frac{1$")                              # broken mathtext: fails when drawn
    with pytest.raises(ValueError):
        save_figure(fig, target)
    assert not plt.fignum_exists(fig.number)                # closed all the same
    assert target.read_bytes() == b"old png"
    assert os.listdir(tmp_path) == ["loss.png"]
