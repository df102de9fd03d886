"""Hostile images for the classifier: files for `kubik classify predict`, IMAGE tensors for the nodes.

Files are real bytes written by the test (PNG, JPEG, GIF, TIFF from Pillow; photos from
scikit-image); each bad one must give its exact one-line error, each unusual but valid one
(16-bit, CMYK, animated, float with NaN, extreme aspect ratios) must classify. The Classify Image
and Smart Crop nodes get 0-size, 1x1, NaN and strip-shaped IMAGE tensors.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from kubik_core.classify.images import load_image
from kubik_core.classify.model import ModelCard, build_model, default_data_config, export_classifier
from kubik_core.cli import main

TINY = {"channels": [8, 8, 8, 8], "stem_width": 8}


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A real exported classifier (random weights) whose card asks for 64 px inputs."""
    model = build_model("resnet18", 3, TINY)
    card = ModelCard(architecture="resnet18", classes=["rocket", "camera", "coffee"],
                     model_kwargs=TINY, **default_data_config(model, 64))
    folder = tmp_path_factory.mktemp("classifiers")
    return export_classifier(model.state_dict(), card, folder / "photos.safetensors")


def _bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> path of a real image file (good, unusual or broken)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("images")
    photo = Image.fromarray(data.astronaut())
    jpeg = _bytes(photo, "JPEG", quality=90)
    frames = [Image.fromarray(data.coffee()).resize((60, 40)), Image.fromarray(data.astronaut()).resize((60, 40))]
    contents = {
        "astronaut.jpg": jpeg,
        "camera-16bit.png": _bytes(Image.fromarray(data.camera().astype(np.uint16) * 257), "PNG"),
        "coffee-cmyk.jpg": _bytes(Image.fromarray(data.coffee()).convert("CMYK"), "JPEG"),
        "animated.gif": _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "float-nan.tif": _bytes(Image.fromarray(np.where(np.eye(32) > 0, np.nan, np.linspace(0, 1e30, 1024)
                                                         .reshape(32, 32)).astype(np.float32), "F"), "TIFF"),
        "one-pixel.png": _bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "strip-1x50000.png": _bytes(Image.new("L", (50_000, 1), 128), "PNG"),
        "zero-bytes.png": b"",
        "not-an-image.png": b"<html>login page</html>",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "bomb-20000x20000.png": _bytes(Image.new("1", (20_000, 20_000)), "PNG"),
        "header-only.png": _bytes(Image.new("RGB", (4, 4)), "PNG")[:33],
    }
    paths = {}
    for name, content in contents.items():
        (folder / name).write_bytes(content)
        paths[name] = folder / name
    (folder / "a-folder.png").mkdir()
    paths["a-folder.png"] = folder / "a-folder.png"
    with open(folder / "huge.jpg", "wb") as fh:  # sparse: 300 MB that take no disk
        fh.truncate(300 * 1024 * 1024)
    paths["huge.jpg"] = folder / "huge.jpg"
    paths["missing.png"] = folder / "missing.png"
    os.mkfifo(folder / "pipe.png")  # reading it would wait forever
    paths["pipe.png"] = folder / "pipe.png"
    return paths


GOOD = ["astronaut.jpg", "camera-16bit.png", "coffee-cmyk.jpg", "animated.gif", "float-nan.tif",
        "one-pixel.png", "strip-1x50000.png"]
BAD = {
    "zero-bytes.png": "empty file (0 bytes)",
    "not-an-image.png": "not an image file (unrecognised format)",
    "truncated.jpg": "truncated or corrupt image (image file is truncated",
    "bomb-20000x20000.png": "image too large to decode safely (Image size (400000000 pixels) exceeds "
                            "limit of 178956970 pixels, could be decompression bomb DOS attack.)",
    "header-only.png": "not an image file (unrecognised format)",
    "a-folder.png": "is a folder, not an image",
    "huge.jpg": "file of 314572800 bytes is too large for an image (limit 268435456)",
    "missing.png": "file not found",
    "pipe.png": "not a regular file (a device, pipe or socket)",
}


@pytest.mark.parametrize("name", GOOD)
def test_unusual_but_valid_files_decode_to_rgb(files, name):
    image = load_image(files[name])
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    pixels = np.asarray(image)
    if name == "camera-16bit.png":  # 16-bit values are rescaled, not clipped to white
        assert 0 < pixels.mean() < 255 and pixels.std() > 10
    if name == "float-nan.tif":  # NaN takes the low end of the finite range; no warning, no garbage
        assert pixels[0, 0, 0] == 0 and pixels[-1, -2, 0] == 255


def test_predict_reports_each_bad_file_and_classifies_the_rest(files, classifier_file, capsys):
    names = GOOD + sorted(BAD)
    code = main(["classify", "predict", "--model", str(classifier_file), "--json", "--top-k", "2",
                 *[str(files[n]) for n in names]])
    assert code == 1  # some files failed
    rows = json.loads(capsys.readouterr().out)
    assert [row["image"] for row in rows] == [str(files[n]) for n in names]
    for name, row in zip(names, rows):
        if name in BAD:
            assert row["error"].startswith(f"{files[name]}: {BAD[name]}"), row
            assert "labels" not in row
        else:
            assert len(row["labels"]) == 2 and all(0 <= s <= 1 for s in row["scores"]), row


def test_a_strip_is_cut_before_the_resize_of_evaluation(classifier_file):
    """Resizing a 1 x 50,000 px strip's short side to the model's 64 px would make a 64 x 3.2
    million px image; the eval transform first cuts it to a bounded aspect ratio."""
    from kubik_core.classify.predict import Classifier

    classifier = Classifier.load(classifier_file)
    steps = classifier.transform().transforms
    strip = Image.new("RGB", (50_000, 1), (90, 90, 90))
    assert steps[0](strip).size == (8, 1)
    assert classifier.transform()(strip).shape == (3, 64, 64)


# ----------------------------------------------------------------------------- the nodes
@pytest.fixture
def loaded(classifier_file, run_node, monkeypatch):
    monkeypatch.setenv("KUBIK_CLASSIFIERS_DIR", str(classifier_file.parent))
    (classifier,) = run_node("KubikLoadClassifier", classifier_name="photos.safetensors")
    return classifier


def _photo(height=48, width=64) -> torch.Tensor:
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((width, height))
    return torch.from_numpy(np.asarray(image, np.float32) / 255.0)[None]


def _nan_image():
    image = _photo()
    image[0, 5, 5, 1] = float("nan")
    return image


HOSTILE_IMAGES = {
    "empty batch": (lambda: torch.zeros(0, 8, 8, 3),
                    "image: expected a non-empty IMAGE batch [B,H,W,C], got (0, 8, 8, 3)"),
    "zero size": (lambda: torch.zeros(1, 0, 0, 3),
                  "image: expected an HxWxC image with C in 1, 3, 4, got shape (0, 0, 3)"),
    "zero width": (lambda: torch.zeros(1, 16, 0, 3),
                   "image: expected an HxWxC image with C in 1, 3, 4, got shape (16, 0, 3)"),
    "two channels": (lambda: torch.zeros(1, 8, 8, 2),
                     "image: expected an HxWxC image with C in 1, 3, 4, got shape (8, 8, 2)"),
    "no batch axis": (lambda: torch.zeros(8, 8, 3),
                      "image: expected a non-empty IMAGE batch [B,H,W,C], got (8, 8, 3)"),
    "not a tensor": (lambda: [[0.0]], "image: expected a non-empty IMAGE batch [B,H,W,C], got list"),
    "NaN": (_nan_image, "image: image contains NaN or infinite values"),
    "infinity": (lambda: torch.full((1, 4, 4, 3), float("inf")), "image: image contains NaN or infinite values"),
}
ODD_BUT_VALID = {
    "1x1": lambda: torch.full((1, 1, 1, 3), 0.5),
    "1x5000 strip": lambda: torch.rand(1, 1, 5000, 3, generator=torch.Generator().manual_seed(0)),
    "5000x1 strip": lambda: torch.rand(1, 5000, 1, 3, generator=torch.Generator().manual_seed(1)),
    "greyscale": lambda: _photo()[..., :1],
    "alpha": lambda: torch.cat([_photo(), torch.ones(1, 48, 64, 1)], dim=-1),
    "half precision": lambda: _photo().half(),
    "out of range": lambda: _photo() * 3 - 1,
}


@pytest.mark.parametrize("case", sorted(HOSTILE_IMAGES))
@pytest.mark.parametrize("node", ["KubikClassifyImage", "KubikSmartCrop"])
def test_hostile_image_inputs_name_the_input(case, node, loaded, run_node):
    make, expected = HOSTILE_IMAGES[case]
    inputs = (dict(classifier=loaded, top_k=2, threshold=0.0, smart_crop="on")
              if node == "KubikClassifyImage" else dict(width=64, height=32, margin=0.1))
    with pytest.raises(ValueError) as info:
        run_node(node, image=make(), **inputs)
    assert str(info.value) == expected


@pytest.mark.parametrize("case", sorted(ODD_BUT_VALID))
def test_odd_images_classify(case, loaded, run_node):
    out = run_node("KubikClassifyImage", classifier=loaded, image=ODD_BUT_VALID[case](), top_k=2,
                   threshold=0.0, smart_crop="on")
    labels, scores, table = out["result"]
    assert len(labels) == 1 and labels[0] in ("rocket", "camera", "coffee")
    assert 0 < scores[0] <= 1 and json.loads(table)[0]["labels"][0] == labels[0]


@pytest.mark.parametrize("case", sorted(ODD_BUT_VALID))
def test_odd_images_crop(case, run_node):
    image, boxes = run_node("KubikSmartCrop", image=ODD_BUT_VALID[case](), width=64, height=32, margin=0.1)
    assert image.shape == (1, 32, 64, 3) and torch.isfinite(image).all()
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    box = json.loads(boxes)[0]
    assert box["right"] > box["left"] >= 0 and box["bottom"] > box["top"] >= 0
