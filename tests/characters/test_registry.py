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
