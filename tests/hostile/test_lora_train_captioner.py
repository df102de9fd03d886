"""Hostile --caption-model folders for `kubik lora train`: each is refused with one clear line and
exit status 2, before any captioning or training starts and without writing a caption."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from kubik_core.cli import main
from lora_train.tiny_blip import save_tiny_blip


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    return save_tiny_blip(tmp_path_factory.mktemp("hostile_captioner") / "blip")


def _edit_json(folder, name, change):
    path = folder / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _text_layers(n):
    return lambda config: config["text_config"].update(num_hidden_layers=n)


CASES = {
    "no such folder": (lambda f: shutil.rmtree(f),
                       "--caption-model blip: no such folder; give the folder a BLIP captioner was saved to "
                       "(config.json, model.safetensors, processor files)"),
    "no config": (lambda f: (f / "config.json").unlink(),
                  "--caption-model blip: config.json is missing; save the captioning model with save_pretrained "
                  "(config.json, model.safetensors and its processor)"),
    "config not json": (lambda f: (f / "config.json").write_text('{"model_type": "blip",'),
                        "--caption-model blip: config.json: not valid JSON (Expecting property name enclosed in "
                        "double quotes: line 1 column 23 (char 22))"),
    "not a captioner": (lambda f: _edit_json(f, "config.json", lambda c: c.update(model_type="clip")),
                        "--caption-model blip: config.json model_type is 'clip'; --caption-model takes a BLIP "
                        "captioner ('blip', e.g. Salesforce/blip-image-captioning-base saved with save_pretrained)"),
    "a million layers": (lambda f: _edit_json(f, "config.json", _text_layers(1_000_000)),
                         "--caption-model blip: config.json text_config.num_hidden_layers = 1000000 is not a "
                         "whole number from 1 to 128"),
    "weights of another model": (lambda f: _edit_json(f, "config.json", _text_layers(2)),
                                 "--caption-model blip: model.safetensors holds 29,432 weights but config.json "
                                 "describes 40,509; the weights belong to another model"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(),
                   "--caption-model blip: model.safetensors is missing beside config.json"),
    "weights not safetensors": (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64),
                                "--caption-model blip: model.safetensors: not a readable safetensors file (Error "
                                "while deserializing header: invalid JSON in header: EOF while parsing a value at "
                                "line 1 column 0)"),
    "huge pictures": (lambda f: _edit_json(f, "processor_config.json",
                                           lambda p: p["image_processor"].update(size={"height": 10**6, "width": 32})),
                      "--caption-model blip: processor_config.json image size {'height': 1000000, 'width': 32} is "
                      "not whole numbers from 1 to 4096"),
    "no tokenizer": (lambda f: [(f / n).unlink() for n in ("tokenizer.json", "vocab.txt")],
                     "--caption-model blip: no tokenizer (tokenizer.json or vocab.txt); save the processor with "
                     "the model (processor.save_pretrained into the same folder)"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_caption_model_is_one_clear_line(case, blip, tmp_path, capsys):
    folder = shutil.copytree(blip, tmp_path / "blip")
    damage, expected = CASES[case]
    damage(folder)
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.zeros((128, 128, 3), dtype=np.uint8)).save(data / "picture.png")
    status = main(["lora", "train", str(data), "--base", str(tmp_path / "none.safetensors"),
                   "--output", str(tmp_path / "out"), "--name", "x", "--resolution", "128", "--no-progress",
                   "--caption-model", str(folder), "--write-captions", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in data.iterdir()) == ["picture.png"]
    assert err == "kubik lora: error: " + expected
