"""Bad input to `kubik consistency` and the Kubik Consistency node: each case is one clear line
(exit status 2 on the command line, a ValueError naming the input in the node), never a
traceback, and a crafted encoder config allocates nothing before it is refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from kubik_core.cli import main
from kubik_testing.tiny_vision import tiny_clip_vision, tiny_dinov2


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("hostile_consistency")
    cat = data.chelsea()
    for name, picture in {"a.png": cat, "b.png": cat[:, ::-1], "c.png": cat[::-1]}.items():
        Image.fromarray(np.ascontiguousarray(picture)).save(root / name)
    good = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("not a picture")
    (root / "no_pictures").mkdir()
    (root / "no_pictures" / "notes.txt").write_text("x")
    tiny_dinov2(root / "dino")
    tiny_clip_vision(root / "clip")
    return root


def _error(capsys, *args) -> str:
    assert main(["consistency", *map(str, args)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err.strip().removeprefix("kubik consistency: error: ")


def _score(capsys, base, encoder, *extra) -> str:
    return _error(capsys, "--references", base / "a.png", base / "b.png", "--images", base / "c.png",
                  "--encoder", encoder, "--device", "cpu", *extra)


def _encoder(base, tmp_path, config=None, weights_from="dino") -> object:
    folder = tmp_path / "encoder"
    folder.mkdir()
    shutil.copy(base / weights_from / "model.safetensors", folder / "model.safetensors")
    text = config if isinstance(config, str) else json.dumps(
        config if config is not None else json.loads((base / "dino" / "config.json").read_text()))
    (folder / "config.json").write_text(text)
    return folder


def test_one_reference(base, capsys):
    assert _error(capsys, "--references", base / "a.png", "--images", base / "b.png", "--encoder",
                  base / "dino") == ("--references: 1 picture; give at least 2 pictures of the character "
                                     "(5 or more calibrate better)")


@pytest.mark.parametrize("name, reason", [("truncated.png", "truncated or corrupt image"),
                                          ("empty.png", "empty file (0 bytes)"),
                                          ("text.png", "not an image file (unrecognised format)")])
def test_unreadable_pictures(base, capsys, name, reason):
    message = _error(capsys, "--references", base / "a.png", base / name, "--images", base / "b.png",
                     "--encoder", base / "dino")
    assert message.startswith(f"--references: {base / name}: {reason}")


def test_missing_paths_and_empty_folders(base, capsys, tmp_path):
    assert _error(capsys, "--references", base / "a.png", base / "b.png", "--images", base / "nope.png",
                  "--encoder", base / "dino") == f"--images {base / 'nope.png'}: no such file or folder"
    assert _error(capsys, "--references", base / "no_pictures", "--images", base / "b.png", "--encoder",
                  base / "dino").startswith(f"--references {base / 'no_pictures'}: the folder holds no pictures")
    assert _score(capsys, base, tmp_path / "nothing") == "nothing: no such encoder folder or file"
    assert _score(capsys, base, base / "a.png") == ("a.png: not an encoder; give a folder holding config.json "
                                                    "and model.safetensors (the transformers layout), or "
                                                    "that model.safetensors")
    out = tmp_path / "folder"
    out.mkdir()
    assert _score(capsys, base, base / "dino", "--out", out) == \
        f"--out {out}: is a folder; name the .json file to write"
    assert _score(capsys, base, base / "dino", "--threshold", "2") == \
        "threshold: 2.0 is not a cosine similarity from -1 to 1"


def test_weights_of_another_model(base, capsys, tmp_path):
    folder = _encoder(base, tmp_path, weights_from="clip")
    assert _score(capsys, base, folder) == ("encoder: model.safetensors holds 24,448 weights for the model "
                                            "but config.json describes 32,384; the weights belong to another model")


def test_damaged_weights_and_missing_files(base, capsys, tmp_path):
    folder = _encoder(base, tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    assert _score(capsys, base, folder).startswith("model.safetensors: ")
    (folder / "model.safetensors").unlink()
    assert _score(capsys, base, folder) == "encoder: model.safetensors is missing beside config.json"
    (folder / "config.json").unlink()
    assert _score(capsys, base, folder) == "encoder: config.json is missing"


@pytest.mark.parametrize("config, message", [
    ("{", "encoder: config.json: not valid JSON (Expecting property name"),
    ("[" * 500 + "]" * 500, "encoder: config.json: JSON is nested 500 levels deep (limit 64)"),
    ('{"model_type": "dinov2", "hidden_size": NaN}', "encoder: config.json: NaN is not a JSON number"),
    ("[1, 2]", "encoder: config.json must hold a JSON object"),
    ({"model_type": "bert"}, "encoder: config.json model_type is 'bert'; the encoders are CLIP vision "
                             "('clip_vision_model' or 'clip') and DINOv2 ('dinov2')"),
    ({"model_type": "dinov2", "num_hidden_layers": 10 ** 9},
     "encoder: config.json num_hidden_layers = 1000000000 is not a whole number from 1 to 128"),
    ({"model_type": "dinov2", "hidden_size": "wide"},
     "encoder: config.json hidden_size = wide is not a whole number from 1 to 16384"),
    ({"model_type": "clip"}, "encoder: a CLIP config.json without a vision_config"),
    ({"model_type": "dinov2", "hidden_act": "no_such_activation"},
     "encoder: config.json does not describe a valid model"),
])
def test_crafted_configs(base, capsys, tmp_path, config, message):
    assert _score(capsys, base, _encoder(base, tmp_path, config)).startswith(message)


def test_bad_preprocessor_config(base, capsys, tmp_path):
    folder = _encoder(base, tmp_path)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_std": [0, 0, 0]}))
    assert _score(capsys, base, folder) == ("encoder: preprocessor_config.json needs 3 means, 3 positive stds "
                                            "and a crop size from 1 to 4096")


def test_mask_of_another_size(base, capsys, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "c.png")
    assert _score(capsys, base, base / "dino", "--masks", masks) == (
        f"--masks: {masks / 'c.png'} is 10x10 but {base / 'c.png'} is 451x300; a mask must have its "
        "picture's size")


# ------------------------------------------------------------------ the node
@pytest.fixture
def node(node_classes, base, monkeypatch):
    monkeypatch.setenv("KUBIK_IMAGE_ENCODERS_DIR", str(base))
    return node_classes["KubikConsistency"]()


def _batch(n=2, h=40, w=50):
    torch.manual_seed(0)
    return torch.rand(n, h, w, 3)


@pytest.mark.parametrize("inputs, message", [
    ({"references": _batch(1)}, "references: 1 picture; give a batch of at least 2 pictures"),
    ({"images": torch.zeros(0, 40, 50, 3)}, "images: expected a non-empty IMAGE batch [B,H,W,C], got (0, 40, 50, 3)"),
    ({"images": _batch().mul(float("nan"))}, "images: image contains NaN or infinite values"),
    ({"mask": torch.ones(2, 10, 10)}, "mask: 10x10 does not match the images' 50x40; give a mask made from these images"),
    ({"mask": torch.ones(3, 40, 50)}, "mask: 3 masks for 2 images; give one mask, or one per image"),
    ({"encoder": "../dino"}, "encoder: '../dino' is not an encoder folder in models/clip_vision"),
    ({"encoder": "clip_vision input"}, "clip_vision: encoder is 'clip_vision input' but nothing is connected"),
    ({"encoder": "clip_vision input", "clip_vision": "a string"},
     "clip_vision: connect the output of Load CLIP Vision, or choose a local encoder"),
    ({"crop": "sideways"}, "crop: 'sideways' is not one of smart, center, none"),
])
def test_node_bad_inputs(node, inputs, message):
    values = {"images": _batch(), "references": _batch(3), "encoder": "dino", "crop": "smart", "threshold": 0.0}
    values.update(inputs)
    with pytest.raises(ValueError) as caught:
        node.score(**values)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
