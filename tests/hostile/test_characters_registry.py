"""Hostile character registries and reference pictures: each is one clear error naming the file
and the field, the file is never written over, and nothing is read outside its folder."""
from __future__ import annotations

import json
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kubik_core.characters import Character, RegistryError, editing, load_registry, put
from kubik_core.characters.pictures import MAX_PIXELS, PictureError, load_square

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def registry_with(*characters, **top) -> str:
    return json.dumps({"version": 1, "characters": list(characters), **top})


CASES = [
    ("[1, 2]", "expected an object with 'characters', found list"),
    ('{"version": 2, "characters": []}', "registry version '2' is not 1 (written by another version of KubikAI?)"),
    ('{"characters": [], "extra": 1}', "unknown field(s) 'extra'; a registry has version and characters"),
    ('{"characters": {"name": "Mira"}}', "characters should be a list, found dict"),
    ("[" * 100 + "]" * 100, "JSON is nested 100 levels deep (limit 8)"),
    ('{"characters": [{"name": "Mira", "threshold": NaN}]}',
     "NaN is not a JSON number (only finite numbers are accepted)"),
    ('{"characters": [{"name": "Mira", "threshold": 1e999}]}', "number 1e999 is out of range (not a finite float)"),
    (registry_with({"name": "Mira"}, {"name": "MIRA"}), "character 2: the name 'MIRA' is used twice"),
    (registry_with({"name": ""}), "character 1: a character needs a name (non-empty text)"),
    (registry_with({"name": "../../etc"}), "character 1: name '../../etc' is not usable"),
    (registry_with({"name": "a\u202eb"}), "character 1: name 'a\\u202eb' is not usable"),
    (registry_with({"name": "x" * 65}), "character 1: name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... is 65 "
                                        "characters long (at most 64)"),
    (registry_with({"name": "Mira", "eval": "import os"}),
     "character 1: unknown field(s) 'eval'; a character has name, loras"),
    (registry_with({"name": "Mira", "loras": [{"name": "/etc/passwd"}]}),
     "character 1: character 'Mira': LoRA 1: LoRA name '/etc/passwd' leaves the loras folder"),
    (registry_with({"name": "Mira", "loras": [{"name": "..\\..\\x.safetensors"}]}),
     "character 1: character 'Mira': LoRA 1: LoRA name '..\\\\..\\\\x.safetensors' leaves the loras folder"),
    (registry_with({"name": "Mira", "loras": [{"name": "C:/x.safetensors"}]}),
     "character 1: character 'Mira': LoRA 1: LoRA name 'C:/x.safetensors' leaves the loras folder"),
    (registry_with({"name": "Mira", "loras": [{"name": "a.safetensors", "strength_model": 1e308}]}),
     "character 1: character 'Mira': LoRA 1: strength_model should be a number from -10 to 10, found 1e+308"),
    (registry_with({"name": "Mira", "loras": [{"name": "a.safetensors", "strength_clip": True}]}),
     "character 1: character 'Mira': LoRA 1: strength_clip should be a number from -10 to 10, found True"),
    (registry_with({"name": "Mira", "loras": [{"name": "a.safetensors", "path": "/x"}]}),
     "character 1: character 'Mira': LoRA 1: unknown field(s) 'path'"),
    (registry_with({"name": "Mira", "loras": ["a.safetensors", "a.safetensors"]}),
     "character 1: character 'Mira': LoRA 'a.safetensors' is listed twice"),
    (registry_with({"name": "Mira", "loras": [f"{n}.safetensors" for n in range(9)]}),
     "character 1: character 'Mira': 9 LoRAs; a character has at most 8"),
    (registry_with({"name": "Mira", "references": ["../secret.png"]}),
     "character 1: character 'Mira': reference '../secret.png' leaves ComfyUI's input folder"),
    (registry_with({"name": "Mira", "references": ["~root/x.png"]}),
     "character 1: character 'Mira': reference '~root/x.png' leaves ComfyUI's input folder"),
    (registry_with({"name": "Mira", "references": ["a//b.png"]}),
     "character 1: character 'Mira': reference 'a//b.png' leaves ComfyUI's input folder"),
    (registry_with({"name": "Mira", "references": ["x.png\x00.txt"]}),
     "character 1: character 'Mira': reference 'x.png\\x00.txt' is not a file name"),
    (registry_with({"name": "Mira", "references": ["model.safetensors"]}),
     "character 1: character 'Mira': reference 'model.safetensors' is not a picture"),
    (registry_with({"name": "Mira", "references": [f"{n}.png" for n in range(33)]}),
     "character 1: character 'Mira': 33 references (at most 32)"),
    (registry_with({"name": "Mira", "trigger_words": "mira"}),
     "character 1: character 'Mira': trigger_words should be a list of texts, found str"),
    (registry_with({"name": "Mira", "trigger_words": ["x" * 101]}),
     "character 1: character 'Mira': a trigger word is 101 characters long (at most 100)"),
    (registry_with({"name": "Mira", "positive": "x" * 2001}),
     "character 1: character 'Mira': positive is 2001 characters long (at most 2000)"),
    (registry_with({"name": "Mira", "negative": "a\nb"}),
     "character 1: character 'Mira': negative holds control characters (one line only)"),
    (registry_with({"name": "Mira", "threshold": -0.1}),
     "character 1: character 'Mira': threshold should be a number from 0 to 1 (or null), found -0.1"),
    (registry_with({"name": "Mira", "style": 5}), "character 1: character 'Mira': style should be text, found int"),
    (registry_with({"name": "Mira", "threshold": 2}),
     "character 1: character 'Mira': threshold should be a number from 0 to 1 (or null), found 2"),
]


@pytest.mark.parametrize("text, message", CASES, ids=range(len(CASES)))
def test_hostile_registry_is_one_clear_error_and_never_written_over(tmp_path, text, message):
    path = tmp_path / "characters.json"
    path.write_text(text)
    with pytest.raises(RegistryError) as error:
        load_registry(path, shown_as="characters.json")
    assert str(error.value).startswith(f"characters.json: {message}"), str(error.value)
    assert str(error.value).endswith("; fix the file or move it away (nothing was changed)")
    with pytest.raises(RegistryError):
        with editing(path) as registry:
            put(registry, Character.from_dict({"name": "Kade"}))
    assert path.read_text() == text


def test_registry_that_is_not_a_file(tmp_path):
    fifo = tmp_path / "characters.json"
    os.mkfifo(fifo)                      # opening it for reading would wait for a writer
    with pytest.raises(RegistryError, match="^characters.json is not a regular file; replace it"):
        load_registry(fifo, shown_as="characters.json")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(5 * 2**20)
    with pytest.raises(RegistryError, match="^huge.json is larger than 4 MiB, too large for a character registry"):
        load_registry(huge, shown_as="huge.json")


def test_hostile_pictures(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(PictureError, match="^reference 'fifo.png' is not a regular file$"):
        load_square(fifo, "reference 'fifo.png'", 64)
    text = tmp_path / "text.png"
    text.write_text("<svg/>")
    with pytest.raises(PictureError, match=r"^reference 'text.png' cannot be read as a picture \(UnidentifiedImageError\)$"):
        load_square(text, "reference 'text.png'", 64)
    # PNG headers claiming 100 and 268 megapixels: refused before any pixel is decoded, by our
    # bound and by PIL's
    for side, message in ((10000, "is 10000x10000 pixels, more than 64 megapixels; use a smaller copy"),
                          (16384, "has more than 64 megapixels; use a smaller copy")):
        assert side * side > MAX_PIXELS
        (tmp_path / "bomb.png").write_bytes(_png_header(side, side))
        with pytest.raises(PictureError) as error:
            load_square(tmp_path / "bomb.png", "reference 'bomb.png'", 64)
        assert str(error.value) == f"reference 'bomb.png' {message}"
    truncated = tmp_path / "truncated.png"
    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(PictureError, match=r"^reference 'truncated.png' cannot be read as a picture \("):
        load_square(truncated, "reference 'truncated.png'", 32)


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk (1-bit grey), then IEND: the size, and no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=40)
                | st.sampled_from(["Mira", "../x.png", "a.safetensors", "/etc/passwd", "x.png", ""]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
fields = st.fixed_dictionaries({"name": json_scalars}, optional={
    "loras": json_values, "trigger_words": json_values, "style": json_scalars, "positive": json_scalars,
    "negative": json_scalars, "references": json_values, "threshold": json_scalars, "notes": json_scalars})
registry_texts = (st.binary(max_size=200)
                  | json_values.map(lambda v: json.dumps(v).encode())
                  | st.lists(fields, max_size=3).map(lambda cs: json.dumps({"version": 1, "characters": cs}).encode()))


@FUZZ
@given(content=registry_texts)
def test_any_registry_file_is_read_or_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("registry") / "characters.json"
    path.write_bytes(content)
    try:
        registry = load_registry(path, shown_as="characters.json")
    except RegistryError as exc:
        assert str(exc).startswith("characters.json") and "\n" not in str(exc).replace("\\n", "")
        return
    for character in registry.characters:   # what was accepted is usable, and stays in its folders
        assert Character.from_dict(character.to_dict()) == character
        for name in [lora.name for lora in character.loras] + character.references:
            assert not os.path.isabs(name) and ".." not in name.replace("\\", "/").split("/")
        character.stack()
        character.positive_prompt("scene")


@pytest.mark.parametrize("character", [5, None, ["Mira"], "x" * 1025])
def test_stack_json_with_a_bad_character_mark(character):
    """A KUBIK_LORA_STACK from an API prompt whose character mark is not a preset's name."""
    from kubik_core.loras.stack import LoraStackError, stack_from_input

    with pytest.raises(LoraStackError) as error:
        stack_from_input({"items": [{"name": "a.safetensors"}], "character": character}, "lora_stack")
    assert str(error.value).startswith("lora_stack: character should be the name of a character preset (text); "
                                       "connect Kubik LoRA Recommender")
