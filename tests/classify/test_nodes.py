"""The classifier nodes, run as ComfyUI runs them, from a renamed copy of the pack."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def classifiers_dir(trained_run, tmp_path, monkeypatch):
    folder = tmp_path / "classifiers" / "digits"
    folder.mkdir(parents=True)
    shutil.copy(trained_run.model_path, folder / "digits.safetensors")
    shutil.copy(trained_run.model_path.with_suffix(".json"), folder / "digits.json")
    monkeypatch.setenv("KUBIK_CLASSIFIERS_DIR", str(tmp_path / "classifiers"))
    return tmp_path / "classifiers"


def _digit_batch(digits_dir, labels=("3", "8")):
    frames = []
    for label in labels:
        image = Image.open(sorted((digits_dir / label).iterdir())[0]).convert("RGB").resize((40, 40))
        frames.append(torch.from_numpy(np.asarray(image, np.float32) / 255.0))
    return torch.stack(frames)


def test_load_lists_and_loads_safetensors(node_classes, run_node, classifiers_dir):
    names = node_classes["KubikLoadClassifier"].INPUT_TYPES()["required"]["classifier_name"][0]
    assert names == ["digits/digits.safetensors", "kubik_digits_demo.safetensors"]  # + the bundled demo
    (classifier,) = run_node("KubikLoadClassifier", classifier_name="digits/digits.safetensors")
    assert classifier.model.classes == [str(d) for d in range(10)]


@pytest.mark.parametrize("name", ["nope.safetensors", "../../etc/passwd"])
def test_load_unknown_or_escaping_name_names_the_input(run_node, classifiers_dir, name):
    with pytest.raises(ValueError, match="classifier_name: .* not in the classifiers model folder"):
        run_node("KubikLoadClassifier", classifier_name=name)


def test_classify_image_batch(run_node, classifiers_dir, digits_dir):
    (classifier,) = run_node("KubikLoadClassifier", classifier_name="digits/digits.safetensors")
    out = run_node("KubikClassifyImage", classifier=classifier, image=_digit_batch(digits_dir),
                   top_k=3, threshold=0.0, smart_crop="off")
    labels, scores, table = out["result"]
    assert labels == ["3", "8"] and all(0 < s <= 1 for s in scores)
    rows = json.loads(table)
    assert [r["image"] for r in rows] == [0, 1] and all(len(r["labels"]) == 3 for r in rows)
    assert out["ui"]["text"][0].startswith("0: 3 ")

    high = run_node("KubikClassifyImage", classifier=classifier, image=_digit_batch(digits_dir),
                    top_k=5, threshold=1.0, smart_crop="as trained")
    assert high["result"][0] == ["", ""] and high["result"][1] == [0.0, 0.0]


def test_classify_bad_inputs(run_node, classifiers_dir, digits_dir):
    (classifier,) = run_node("KubikLoadClassifier", classifier_name="digits/digits.safetensors")
    with pytest.raises(ValueError, match="image: expected a non-empty IMAGE"):
        run_node("KubikClassifyImage", classifier=classifier, image=torch.zeros(0, 8, 8, 3),
                 top_k=1, threshold=0.0, smart_crop="off")
    with pytest.raises(ValueError, match="image: image contains NaN"):
        run_node("KubikClassifyImage", classifier=classifier, image=torch.full((1, 8, 8, 3), float("nan")),
                 top_k=1, threshold=0.0, smart_crop="off")
    with pytest.raises(ValueError, match="classifier: connect"):
        run_node("KubikClassifyImage", classifier="digits", image=_digit_batch(digits_dir),
                 top_k=1, threshold=0.0, smart_crop="off")


def test_smart_crop_node(run_node):
    from skimage import data

    image = torch.from_numpy(data.chelsea().astype(np.float32) / 255.0)[None]
    cropped, boxes = run_node("KubikSmartCrop", image=image.repeat(2, 1, 1, 1), width=64, height=96,
                              margin=0.1)
    assert cropped.shape == (2, 96, 64, 3) and cropped.dtype == torch.float32
    assert 0.0 <= float(cropped.min()) and float(cropped.max()) <= 1.0
    box = json.loads(boxes)[0]
    assert abs((box["right"] - box["left"]) / (box["bottom"] - box["top"]) - 64 / 96) < 0.02
    with pytest.raises(ValueError, match="image: expected"):
        run_node("KubikSmartCrop", image=torch.zeros(3, 3), width=64, height=64, margin=0.1)
