"""Kubik Example Image: the pack's own pictures, with core Load Image's outputs, on any ComfyUI.

Checked against the picture files read independently with PIL, and end to end: each digit
picture goes through the shipped demo classifier (as the Kubik Classify Image template runs it)
and comes out as its digit.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from kubik_testing.pack import REPO

PICTURES = REPO / "example_pictures"


def test_lists_the_shipped_pictures(node_classes):
    choices, options = node_classes["KubikExampleImage"].INPUT_TYPES()["required"]["picture"]
    assert choices == sorted(p.name for p in PICTURES.iterdir() if p.suffix in (".png", ".jpg"))
    assert {"digit_2.png", "digit_6.png", "digit_7.png", "shape_blob.png", "shape_box.png",
            "photo_coffee.jpg"} <= set(choices)
    assert options["default"] in choices


@pytest.mark.parametrize("name", sorted(p.name for p in PICTURES.glob("*.*") if p.suffix != ".md"))
def test_outputs_as_load_image(run_node, name):
    image, mask = run_node("KubikExampleImage", picture=name)
    with Image.open(PICTURES / name) as picture:
        expected = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
        alpha = np.asarray(picture.getchannel("A"), dtype=np.float32) / 255 if "A" in picture.getbands() else None
    h, w = expected.shape[:2]
    assert image.dtype == torch.float32 and image.shape == (1, h, w, 3)
    assert torch.equal(image[0], torch.from_numpy(expected))
    assert mask.dtype == torch.float32 and mask.shape == (1, h, w)
    if alpha is None:
        assert not mask.any()
    else:  # 1 on transparent pixels, as Load Image's MASK
        assert torch.allclose(mask[0], torch.from_numpy(1 - alpha))
        assert 0 < mask.mean() < 1


def test_shape_renders_are_cut_out_by_their_mask(run_node):
    image, mask = run_node("KubikExampleImage", picture="shape_blob.png")
    assert mask[0, 0, 0] == 1 and mask[0, 64, 64] == 0        # corner transparent, centre the object
    assert image[0, 64, 64].sum() > 0


@pytest.mark.parametrize("digit", ["2", "6", "7"])
def test_digit_pictures_are_read_as_their_digit_by_the_demo_classifier(run_node, digit, monkeypatch):
    monkeypatch.delenv("KUBIK_CLASSIFIERS_DIR", raising=False)   # the pack's bundled classifier
    image, _ = run_node("KubikExampleImage", picture=f"digit_{digit}.png")
    (classifier,) = run_node("KubikLoadClassifier", classifier_name="kubik_digits_demo.safetensors")
    result = run_node("KubikClassifyImage", classifier=classifier, image=image, top_k=3, threshold=0.0,
                      smart_crop="as trained")
    labels = result["result"][0] if isinstance(result, dict) else result[0]
    assert labels == [digit]


def test_templates_name_shipped_pictures(node_classes):
    choices = node_classes["KubikExampleImage"].INPUT_TYPES()["required"]["picture"][0]
    used = []
    for path in sorted((REPO / "workflows" / "api").glob("*.json")):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] == "KubikExampleImage":
                used.append(node["inputs"]["picture"])
                assert node["inputs"]["picture"] in choices, path.name
    assert len(used) >= 2, "the classify and image-to-3D templates load example pictures"


def test_lists_only_plain_picture_files(node_classes, tmp_path, monkeypatch):
    """Links, folders and other files in the pictures folder are neither listed nor read."""
    examples = sys.modules[node_classes["KubikExampleImage"].__module__]
    folder = tmp_path / "example_pictures"
    folder.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(folder / "red.png")
    (tmp_path / "outside.png").write_bytes((folder / "red.png").read_bytes())
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    (folder / "folder.png").mkdir()
    (folder / "notes.txt").write_text("not a picture")
    monkeypatch.setattr(examples, "PICTURES_DIR", folder)
    assert examples.picture_names() == ["red.png"]
    with pytest.raises(ValueError, match=r"^picture: 'link.png' is not one of the pack's example pictures \(red.png\)"):
        examples.load_picture("link.png")
    image, _ = examples.load_picture("red.png")
    assert image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_a_damaged_picture_is_named_with_the_fix(node_classes, tmp_path, monkeypatch):
    examples = sys.modules[node_classes["KubikExampleImage"].__module__]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    monkeypatch.setattr(examples, "PICTURES_DIR", tmp_path)
    with pytest.raises(ValueError) as err:
        examples.load_picture("broken.png")
    assert str(err.value) == ("picture: broken.png cannot be read (UnidentifiedImageError); "
                              "reinstall the pack to restore its example pictures")
    assert str(tmp_path) not in str(err.value)
