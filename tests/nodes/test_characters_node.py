"""Kubik Character as ComfyUI runs it (pack loaded from a renamed copy, no ComfyUI): a registry
file, a real LoRA library and real pictures in an input folder, all written by the test."""
from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
from PIL import Image

from kubik_testing.lora_library import civitai_version
from kubik_testing.pack import REPO

COFFEE = REPO / "example_pictures" / "photo_coffee.jpg"


@pytest.fixture
def env(library_dir, tmp_path, monkeypatch):
    """A LoRA library with two character LoRAs, an input folder with two pictures of different
    shapes, and a registry holding 'Mira'."""
    from kubik_core.loras.synthetic import kohya_metadata, write_lora

    for stem, model, words in (("mira_oc_xl", "Mira (OC)", ["mira_oc", "silver hair"]),
                               ("vessa_moonblade", "Vessa Moonblade (OC)", ["vessamb", "elf ears"])):
        write_lora(library_dir / "xl" / f"{stem}.safetensors", "kohya", "sdxl",
                   metadata=kohya_metadata("sdxl", stem), seed=len(stem))
        (library_dir / "xl" / f"{stem}.civitai.info").write_text(
            json.dumps(civitai_version("SDXL 1.0", words, tags=["character"])))
    inputs = tmp_path / "input"
    (inputs / "mira").mkdir(parents=True)
    with Image.open(COFFEE) as photo:
        photo.convert("RGB").save(inputs / "mira" / "wide.png")                         # 450x300
        photo.convert("RGB").crop((100, 0, 250, 300)).save(inputs / "mira" / "tall.jpg")  # 150x300
    registry = tmp_path / "user" / "characters.json"
    registry.parent.mkdir()
    registry.write_text(json.dumps({"version": 1, "characters": [{
        "name": "Mira", "loras": [{"name": "xl/mira_oc_xl.safetensors", "strength_model": 0.8,
                                   "strength_clip": 0.6}],
        "trigger_words": ["mira_oc", "silver hair"], "style": "watercolor, soft light",
        "positive": "green cloak", "negative": "lowres, extra fingers",
        "references": ["mira/wide.png", "mira/tall.jpg"], "threshold": 0.71, "notes": "my OC"}]}))
    monkeypatch.setenv("KUBIK_LORAS_DIR", str(library_dir))
    monkeypatch.setenv("KUBIK_INPUT_DIR", str(inputs))
    monkeypatch.setenv("KUBIK_CHARACTERS_FILE", str(registry))
    monkeypatch.setenv("KUBIK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    return {"registry": registry, "inputs": inputs, "library": library_dir}


def _run(run_node, character, prompt="reading in a cafe", negative="", size=64):
    return run_node("KubikCharacter", character=character, prompt=prompt, negative=negative,
                    reference_size=size)


def test_menu_lists_the_registry_then_the_examples(node_classes, env):
    names, options = node_classes["KubikCharacter"].INPUT_TYPES()["required"]["character"]
    assert names == ["Mira", "Example (espresso cup)"]
    assert options["default"] == "Example (espresso cup)"


def test_character_outputs(run_node, env):
    stack, positive, negative, references, threshold = _run(run_node, "Mira", negative="blurry")
    assert [(i.name, i.strength_model, i.strength_clip) for i in stack.items] == \
        [("xl/mira_oc_xl.safetensors", 0.8, 0.6)]
    assert stack.character == "Mira"
    assert positive == "mira_oc, silver hair, green cloak, reading in a cafe, watercolor, soft light"
    assert negative == "lowres, extra fingers, blurry"
    assert threshold == 0.71
    assert tuple(references.shape) == (2, 64, 64, 3) and references.dtype.is_floating_point
    assert 0.0 <= float(references.min()) and float(references.max()) <= 1.0
    # each picture is its centred square, resized: the wide photo loses its sides, not its top
    with Image.open(env["inputs"] / "mira" / "wide.png") as wide:
        expected = np.asarray(wide.crop((75, 0, 375, 300)).resize((64, 64), Image.Resampling.LANCZOS),
                              dtype=np.float32) / 255.0
    assert np.abs(references[0].numpy() - expected).max() < 1e-6


def test_example_runs_on_an_empty_comfyui(run_node, env, monkeypatch):
    """The template's character: no registry file, no LoRA, its picture from the pack."""
    monkeypatch.setenv("KUBIK_CHARACTERS_FILE", str(env["registry"].parent / "none.json"))
    stack, positive, negative, references, threshold = _run(run_node, "Example (espresso cup)", prompt="")
    assert stack.items == [] and stack.character == "Example (espresso cup)"
    assert positive == ("a red espresso cup on a matching saucer, a silver spoon beside it, "
                        "still life photograph, warm light, shallow depth of field")
    assert negative.startswith("blurry")
    assert tuple(references.shape) == (2, 64, 64, 3) and threshold == 0.0


def test_validation_reads_the_registry_not_the_menu(node_classes, env):
    cls = node_classes["KubikCharacter"]
    assert cls.VALIDATE_INPUTS("mira") is True           # names are compared without case
    message = cls.VALIDATE_INPUTS("Nobody")
    assert message.startswith("character: no character named 'Nobody' (known: Mira, Example (espresso cup));")
    data = json.loads(env["registry"].read_text())
    data["characters"].append({"name": "Nobody"})
    env["registry"].write_text(json.dumps(data))
    assert cls.VALIDATE_INPUTS("Nobody") is True         # added after the menu was read: accepted


def test_outputs_change_when_the_character_or_a_picture_does(node_classes, env):
    cls = node_classes["KubikCharacter"]
    before = cls.IS_CHANGED(character="Mira", prompt="", negative="", reference_size=64)
    assert cls.IS_CHANGED(character="Mira", prompt="", negative="", reference_size=64) == before
    Image.new("RGB", (40, 40), "red").save(env["inputs"] / "mira" / "tall.jpg")
    after_picture = cls.IS_CHANGED(character="Mira", prompt="", negative="", reference_size=64)
    assert after_picture != before
    env["registry"].write_text(env["registry"].read_text().replace("0.71", "0.72"))
    assert cls.IS_CHANGED(character="Mira", prompt="", negative="", reference_size=64) != after_picture


def test_missing_files_are_clear_errors_without_server_paths(run_node, env):
    (env["inputs"] / "mira" / "tall.jpg").unlink()
    with pytest.raises(ValueError) as missing:
        _run(run_node, "Mira")
    assert str(missing.value) == ("character: reference picture 'mira/tall.jpg' of 'Mira' is not a file in "
                                  "ComfyUI's input folder; copy it there, or change the character's references "
                                  "(`kubik characters set NAME --reference PICTURE`)")
    (env["inputs"] / "mira" / "tall.jpg").write_bytes(b"not a picture")
    with pytest.raises(ValueError, match=r"^character: reference picture 'mira/tall.jpg' of 'Mira' cannot be "
                                         r"read as a picture \(UnidentifiedImageError\); replace the picture"):
        _run(run_node, "Mira")
    with pytest.raises(ValueError, match=r"^prompt: should be text, got list$"):
        _run(run_node, "Mira", prompt=["a", "list"])
    with pytest.raises(ValueError, match=r"^reference_size: should be a whole number from 64 to 2048, got 8$"):
        _run(run_node, "Example (espresso cup)", size=8)
    (env["library"] / "xl" / "mira_oc_xl.safetensors").unlink()
    with pytest.raises(ValueError, match=r"^character: LoRA 'xl/mira_oc_xl.safetensors' of 'Mira' is not in "
                                         r"ComfyUI's loras folders"):
        _run(run_node, "Mira")


def test_a_broken_registry_keeps_the_menu_and_loses_nothing(node_classes, run_node, env):
    broken = '{"version": 1, "characters": [{"name": "Mira", "loras": [}'
    env["registry"].write_text(broken)
    names, _options = node_classes["KubikCharacter"].INPUT_TYPES()["required"]["character"]
    assert names == ["Example (espresso cup)"]
    with pytest.raises(ValueError) as error:
        _run(run_node, "Mira")
    assert str(error.value).startswith("character: the registry cannot be read ($KUBIK_CHARACTERS_FILE: not "
                                       "valid JSON (")
    assert str(env["registry"]) not in str(error.value)
    assert math.isnan(node_classes["KubikCharacter"].IS_CHANGED(character="Mira"))
    assert _run(run_node, "Example (espresso cup)")[3].shape[0] == 2
    assert env["registry"].read_text() == broken


def test_recommender_keeps_the_preset_and_adds_no_other_character(pack, run_node, env):
    """On the real library: the prompt names another character (Vessa) and asks for a photo style
    and a castle. Without the preset the recommender picks Vessa; with it, Mira's LoRA comes first
    at its own strengths and Vessa is left out with the reason."""
    stack, positive, *_ = _run(run_node, "Mira", prompt="with vessamb, elf ears, analog film photo, gothic castle")
    analysis = importlib.import_module(f"{pack.__name__}.kubik_core.prompting").analyze_prompt(positive)
    inputs = dict(analysis=analysis, max_loras=3, priority="balanced", family="sdxl", content="safe",
                  blocklist="", weight_semantic=0.4, weight_keyword=0.3, weight_popularity=0.2,
                  weight_history=0.1)
    alone, _triggers, _reasons = run_node("KubikLoraRecommender", **inputs)
    assert "xl/vessa_moonblade.safetensors" in [i.name for i in alone.items]

    kept, triggers, reasons = run_node("KubikLoraRecommender", lora_stack=stack, **inputs)
    assert [(i.name, i.strength_model, i.strength_clip, i.suggested) for i in kept.items] == [
        ("xl/mira_oc_xl.safetensors", 0.8, 0.6, False),
        ("xl/film_photo_xl.safetensors", 0.7, 0.6, True), ("xl/castle_detail.safetensors", 0.8, 0.8, True)]
    assert kept.character == "Mira"
    assert reasons.startswith("- xl/mira_oc_xl.safetensors at 0.8: kept from character preset Mira\n")
    assert ("- not used: xl/vessa_moonblade.safetensors (character: the stack keeps character preset Mira, "
            "and no other character is added to it)") in reasons
    # the stack as JSON (an API prompt) keeps its character mark
    as_json = json.dumps(stack.to_dict())
    again, _triggers, _reasons = run_node("KubikLoraRecommender", lora_stack=as_json, **inputs)
    assert [i.name for i in again.items] == [i.name for i in kept.items] and again.character == "Mira"
