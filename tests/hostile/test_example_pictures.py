"""Hostile picture names for Kubik Example Image: each is refused with the same one-line error,
naming the input and the pictures there are, and nothing outside example_pictures/ is opened.

An API prompt skips no check here: ComfyUI validates combo values, but the node is also called
directly (tests, other packs, the node run outside ComfyUI), so it checks the name itself.
"""
from __future__ import annotations

import builtins
import sys

import pytest
from PIL import Image

HOSTILE_NAMES = [
    "../README.md",
    "../../../../etc/passwd",
    "/etc/passwd",
    "digit_7.png/../../README.md",
    "./digit_7.png",
    "digit_7.png ",
    "DIGIT_7.PNG",
    "README.md",
    "..",
    "",
    "digit_7.png\x00.txt",
    "..\\..\\README.md",
    "~/digit_7.png",
    "digit_7.png\n",
    "x" * 5000,
]


@pytest.fixture
def examples(node_classes):
    module = sys.modules[node_classes["KubikExampleImage"].__module__]
    module.load_picture("digit_7.png")  # its lazy imports done, so that only picture reads remain
    return module


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:30]))
def test_hostile_name_is_refused_without_opening_anything(examples, name, monkeypatch):
    opened = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or pytest.fail("opened a file"))
    monkeypatch.setattr(builtins, "open", lambda *a, **k: opened.append(a) or pytest.fail("opened a file"))
    with pytest.raises(ValueError) as err:
        examples.load_picture(name)
    message = str(err.value)
    assert message == (f"picture: {name[:60]!r} is not one of the pack's example pictures "
                       f"({', '.join(examples.picture_names())}); pick one from the list")
    assert "\n" not in message.replace("\\n", "") and str(examples.PICTURES_DIR) not in message
    assert opened == []


@pytest.mark.parametrize("value", [None, 7, 7.0, True, ["digit_7.png"], {"name": "digit_7.png"}, b"digit_7.png"],
                         ids=repr)
def test_a_value_that_is_not_a_name_is_refused(examples, value):
    with pytest.raises(ValueError) as err:
        examples.load_picture(value)
    assert str(err.value).startswith(f"picture: {type(value).__name__} is not one of the pack's example pictures (")
