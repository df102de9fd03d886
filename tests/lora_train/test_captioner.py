"""--caption-model: pictures without a .txt get a caption from a local BLIP captioner (a tiny
random-weight one here), after the trigger word; existing captions are kept; --write-captions
saves the new ones beside the pictures, otherwise nothing is written."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kubik_core.cli import main
from kubik_core.lora_train import captioner, dataset
from lora_train.tiny_blip import WORDS, save_tiny_blip


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    return save_tiny_blip(tmp_path_factory.mktemp("captioner") / "blip")


def _data(folder):
    folder.mkdir()
    for seed, name in enumerate(("red_dress.png", "blue_hat.png", "kept.png")):
        pixels = np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "kept.txt").write_text("kbk, a caption the user wrote")
    return folder


def _from_model(caption: str) -> list[str]:
    """The words after the trigger; each one is a token of the tiny model's vocabulary."""
    assert caption.startswith("kbk, ")
    words = caption[len("kbk, "):].split()
    assert words and set(words) <= set(WORDS), caption
    return words


@pytest.mark.timeout(120)
def test_pictures_without_a_caption_are_captioned_by_the_model_in_memory(tmp_path, blip):
    folder = _data(tmp_path / "data")
    calls = []

    def caption(paths):
        calls.append([p.name for p in paths])
        return captioner.captions_from_model(blip, log=lambda _: None)(paths)

    items = {i.path.name: i.caption for i in dataset.load_items(folder, "kbk", 128, 1.0, caption)}
    assert calls == [["blue_hat.png", "red_dress.png"]]          # loaded once, for the two without .txt
    assert items["kept.png"] == "kbk, a caption the user wrote"
    _from_model(items["red_dress.png"])
    _from_model(items["blue_hat.png"])
    assert "red dress" not in items["red_dress.png"]              # not the file-name fallback
    assert sorted(p.name for p in folder.iterdir()) == ["blue_hat.png", "kept.png", "kept.txt", "red_dress.png"]
    # Greedy decoding: the same picture gets the same caption on every run (and every process).
    again = {i.path.name: i.caption for i in dataset.load_items(
        folder, "kbk", 128, 1.0, captioner.captions_from_model(blip, log=lambda _: None))}
    assert again == items


@pytest.mark.timeout(120)
def test_write_captions_saves_them_beside_the_pictures_through_the_command(tmp_path, blip, capsys):
    folder = _data(tmp_path / "data")
    # No --base file: the run stops after the data (and its captions) are ready.
    status = main(["lora", "train", str(folder), "--base", str(tmp_path / "none.safetensors"),
                   "--output", str(tmp_path / "out"), "--name", "x", "--resolution", "128", "--trigger", "kbk",
                   "--caption-model", str(blip), "--write-captions", "--no-progress", "--device", "cpu"])
    assert status == 2 and "--base: no file 'none.safetensors'" in capsys.readouterr().err
    assert (folder / "kept.txt").read_text() == "kbk, a caption the user wrote"
    for stem in ("red_dress", "blue_hat"):
        text = (folder / f"{stem}.txt").read_text()
        assert text.endswith("\n") and text.count("\n") == 1
        _from_model(text.strip())
    written = (folder / "red_dress.txt").read_text()
    # A rerun reads them back as the user's own captions: the model is not asked again.
    items = dataset.load_items(folder, "kbk", 128, 1.0, lambda paths: pytest.fail(f"captioned {paths}"))
    assert {i.path.name: i.caption for i in items}["red_dress.png"] == written.strip()
