"""The character registry: where it lives, a round trip through its file, and atomic, serialised
edits that never write over a file they could not read."""
from __future__ import annotations

import json
import threading

import pytest

from kubik_core.characters import (Character, RegistryError, editing, load_registry, put, record_threshold,
                                   registry_path)

MIRA = {"name": "Mira", "loras": [{"name": "chars/mira_v2.safetensors", "strength_model": 0.8,
                                   "strength_clip": 0.6}, "xl/watercolor.safetensors"],
        "trigger_words": ["mira_oc", "silver hair"], "style": "watercolor", "positive": "green cloak",
        "negative": "lowres", "references": ["mira/front.png", "mira/side.webp"], "threshold": 0.71,
        "notes": "line one\nline two"}


def test_location(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBIK_CHARACTERS_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert registry_path(None) == tmp_path / "data" / "kubik" / "characters.json"   # the command line
    assert registry_path(tmp_path / "user" / "kubik") == tmp_path / "user" / "kubik" / "characters.json"  # ComfyUI
    monkeypatch.setenv("KUBIK_CHARACTERS_FILE", str(tmp_path / "shared.json"))
    assert registry_path(tmp_path / "user" / "kubik") == tmp_path / "shared.json"    # one for both


def test_round_trip(tmp_path):
    path = tmp_path / "characters.json"
    assert load_registry(path).characters == []          # no file yet: an empty registry, none created
    assert not path.exists()
    with editing(path) as registry:
        put(registry, Character.from_dict(MIRA))
        put(registry, Character.from_dict({"name": "Kade"}))
    loaded = load_registry(path)
    assert loaded.names() == ["Mira", "Kade"]
    mira = loaded.get("MIRA")                             # names are found without case
    assert mira.to_dict() == {**MIRA, "loras": [MIRA["loras"][0], {"name": "xl/watercolor.safetensors",
                                                                  "strength_model": 1.0, "strength_clip": 1.0}]}
    assert json.loads(path.read_text())["version"] == 1
    stack = mira.stack()
    assert [(i.name, i.strength_model, i.strength_clip) for i in stack.items] == [
        ("chars/mira_v2.safetensors", 0.8, 0.6), ("xl/watercolor.safetensors", 1.0, 1.0)]
    assert stack.character == "Mira"
    assert mira.positive_prompt(" a cafe, ") == "mira_oc, silver hair, green cloak, a cafe, watercolor"
    assert mira.negative_prompt("") == "lowres"
    assert record_threshold(path, "mira", 0.5).threshold == 0.5
    assert load_registry(path).get("Mira").threshold == 0.5


def test_names_are_unique_and_examples_reserved(tmp_path):
    path = tmp_path / "characters.json"
    with editing(path) as registry:
        put(registry, Character.from_dict({"name": "Mira"}))
    with pytest.raises(RegistryError, match="^a character named 'Mira' exists already; choose another name"):
        with editing(path) as registry:
            put(registry, Character.from_dict({"name": "mira"}))
    with pytest.raises(RegistryError, match=r"^'example \(espresso cup\)' is the name of a character that ships"):
        with editing(path) as registry:
            put(registry, Character.from_dict({"name": "example (espresso cup)"}))
    assert load_registry(path).names() == ["Mira"]


def test_a_failed_edit_writes_nothing(tmp_path):
    path = tmp_path / "characters.json"
    with editing(path) as registry:
        put(registry, Character.from_dict({"name": "Mira"}))
    before = path.read_bytes()
    with pytest.raises(KeyError):
        with editing(path) as registry:
            registry.characters.clear()
            raise KeyError("the block failed")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["characters.json", "characters.json.lock"]


@pytest.mark.timeout(60)
def test_concurrent_writers_lose_nothing(tmp_path):
    """Eight threads add a character each at once: the lock serialises the read-change-write."""
    path = tmp_path / "characters.json"

    def add(n: int) -> None:
        with editing(path) as registry:
            put(registry, Character.from_dict({"name": f"Char {n}"}))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(load_registry(path).names()) == [f"Char {n}" for n in range(8)]


def test_record_threshold_keeps_the_rest_and_never_writes_over_a_broken_file(tmp_path):
    path = tmp_path / "characters.json"
    with editing(path) as registry:
        put(registry, Character.from_dict(MIRA))
        put(registry, Character.from_dict({"name": "Kade", "threshold": 0.5}))
    assert record_threshold(path, "mira", 0.8125).threshold == 0.8125
    stored = json.loads(path.read_text())["characters"]
    assert stored == [{**MIRA, "threshold": 0.8125, "loras": stored[0]["loras"]}, {**stored[1], "threshold": 0.5}]
    with pytest.raises(RegistryError, match=r"^threshold should be a number from 0 to 1 \(or null\), found 1.5$"):
        record_threshold(path, "Mira", 1.5)
    with pytest.raises(RegistryError, match="^no character named 'Nobody' \\(known: Mira, Kade\\)"):
        record_threshold(path, "Nobody", 0.7)
    broken = path.read_bytes().replace(b'"threshold": 0.5', b'"threshold": 5')
    path.write_bytes(broken)
    with pytest.raises(RegistryError, match="character 2: character 'Kade': threshold should be a number"):
        record_threshold(path, "Mira", 0.7)
    assert path.read_bytes() == broken


def test_a_characters_pictures_stay_in_their_folder(tmp_path):
    """reference_files: the input folder's files, the pack's pictures for an example, and a link
    that leads out of the input folder refused."""
    from kubik_core.characters import EXAMPLES, PictureError, reference_files

    inputs = tmp_path / "input"
    (inputs / "mira").mkdir(parents=True)
    (inputs / "mira" / "front.png").write_bytes(b"picture")
    (tmp_path / "secret.png").write_bytes(b"outside")
    (inputs / "mira" / "side.webp").symlink_to(tmp_path / "secret.png")
    mira = Character.from_dict(MIRA)
    mira.references = ["mira/front.png"]
    assert reference_files(mira, inputs) == [inputs / "mira" / "front.png"]
    assert [p.is_file() for p in reference_files(EXAMPLES[0], None, is_example=True)] == [True, True]
    with pytest.raises(PictureError, match="^reference picture 'mira/side.webp' of 'Mira' is not a file in the "
                                           "input folder"):
        reference_files(Character.from_dict(MIRA), inputs)
    with pytest.raises(PictureError, match="^the references of 'Mira' are pictures in ComfyUI's input folder; "
                                           "name that folder"):
        reference_files(mira, None)
