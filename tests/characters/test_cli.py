"""`kubik characters` as a user runs it: list, add, show, set, remove, import, and one-line errors."""
from __future__ import annotations

import json

import pytest

from kubik_core.cli import main


@pytest.fixture
def registry(tmp_path, monkeypatch):
    path = tmp_path / "characters.json"
    monkeypatch.setenv("KUBIK_CHARACTERS_FILE", str(path))
    monkeypatch.delenv("KUBIK_INPUT_DIR", raising=False)
    return path


def test_add_show_set_remove(registry, tmp_path, capsys):
    inputs = tmp_path / "input"
    (inputs / "mira").mkdir(parents=True)
    (inputs / "mira" / "front.png").write_bytes(b"a picture")
    assert main(["characters", "add", "Mira", "--lora", "chars/mira:v2.safetensors:0.8:0.6",
                 "--lora", "xl/style.safetensors:0.5", "--trigger", "mira_oc", "--style", "watercolor",
                 "--negative", "lowres", "--reference", "mira/front.png", "--input-dir", str(inputs)]) == 0
    assert capsys.readouterr().out == f"added Mira to {registry}\n"
    assert main(["characters", "show", "mira", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["loras"] == [{"name": "chars/mira:v2.safetensors", "strength_model": 0.8, "strength_clip": 0.6},
                              {"name": "xl/style.safetensors", "strength_model": 0.5, "strength_clip": 0.5}]
    assert shown["trigger_words"] == ["mira_oc"] and shown["threshold"] is None

    assert main(["characters", "set", "Mira", "--rename", "Mira (v2)", "--threshold", "0.7", "--no-loras"]) == 0
    assert main(["characters", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["Mira (v2): no LoRA; mira_oc; 1 reference(s), threshold 0.7",
                        "Example (espresso cup): no LoRA; no trigger word; 2 reference(s)  [example, ships with KubikAI]"]
    assert main(["characters", "show", "Mira (v2)"]) == 0
    assert "  references mira/front.png\n" in capsys.readouterr().out

    exported = tmp_path / "mira.json"
    main(["characters", "show", "Mira (v2)", "--json"])
    exported.write_text(capsys.readouterr().out)
    assert main(["characters", "remove", "mira (v2)"]) == 0
    assert json.loads(registry.read_text())["characters"] == []
    assert main(["characters", "import", str(exported)]) == 0
    assert capsys.readouterr().out.endswith("imported 1 character(s): Mira (v2)\n")
    assert main(["characters", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["example"]) for c in listed["characters"]] == [("Mira (v2)", False),
                                                                         ("Example (espresso cup)", True)]


@pytest.mark.parametrize("argv, message", [
    (["add", "../evil"], "name '../evil' is not usable: start with a letter or digit"),
    (["add", "X", "--lora", "../../etc/passwd"], "character 'X': LoRA 1: LoRA name '../../etc/passwd' leaves the "
                                                  "loras folder"),
    (["add", "X", "--lora", "a.safetensors:99"], "character 'X': LoRA 1: strength_model should be a number from "
                                                  "-10 to 10, found 99.0"),
    (["add", "X", "--reference", "/etc/x.png"], "character 'X': reference '/etc/x.png' leaves ComfyUI's input folder"),
    (["add", "X", "--reference", "notes.txt"], "character 'X': reference 'notes.txt' is not a picture"),
    (["add", "X", "--threshold", "nan"], "character 'X': threshold should be a number from 0 to 1 (or null), "
                                         "found nan"),
    (["add", "X", "--reference", "missing.png", "--input-dir", "."], "reference 'missing.png' is not a file in "
                                                                     "the input folder"),
    (["show", "Nobody"], "no character named 'Nobody' (known: none yet)"),
    (["set", "Nobody", "--style", "x"], "no character named 'Nobody'"),
    (["set", "Example (espresso cup)", "--style", "x"], "'Example (espresso cup)' ships with KubikAI and cannot be "
                                                      "changed"),
    (["remove", "Example (espresso cup)"], "'Example (espresso cup)' ships with KubikAI and cannot be removed"),
    (["import", "no-such-file.json"], "no-such-file.json: no such file"),
])
def test_errors_are_one_line(registry, capsys, argv, message):
    assert main(["characters", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubik characters: error: {message}") and err.count("\n") == 1, err
    assert not registry.exists()


def test_a_broken_registry_is_never_written_over(registry, capsys):
    broken = b'{"version": 1, "characters": [{"name": "Mira", "style": "watercolor"},]}'
    registry.write_bytes(broken)
    assert main(["characters", "add", "Kade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubik characters: error: {registry}: not valid JSON (") and \
        err.endswith("fix the file or move it away (nothing was changed)\n")
    assert main(["characters", "remove", "Mira"]) == 2
    assert registry.read_bytes() == broken


def test_loras_recommend_keeps_a_character_preset(registry, tmp_path, capsys):
    """`kubik loras recommend --character` on a real library with two character LoRAs: the prompt
    names the other character too, which is left out; the preset's LoRA comes first."""
    from kubik_testing.lora_library import build_library, civitai_version

    from kubik_core.loras.synthetic import kohya_metadata, write_lora

    library = build_library(tmp_path / "loras")
    for stem, words in (("mira_oc_xl", ["mira_oc"]), ("vessa_moonblade", ["vessamb", "elf ears"])):
        write_lora(library / "xl" / f"{stem}.safetensors", "kohya", "sdxl", metadata=kohya_metadata("sdxl", stem),
                   seed=len(stem))
        (library / "xl" / f"{stem}.civitai.info").write_text(
            json.dumps(civitai_version("SDXL 1.0", words, tags=["character"])))
    assert main(["characters", "add", "Mira", "--lora", "xl/mira_oc_xl.safetensors:0.9", "--trigger", "mira_oc",
                 "--style", "analog film photo"]) == 0
    capsys.readouterr()
    args = ["loras", "recommend", "with vessamb in a gothic castle", "--library", str(library), "--family", "sdxl",
            "--no-cache", "--json"]
    assert main(args) == 0
    alone = json.loads(capsys.readouterr().out)
    assert "xl/vessa_moonblade.safetensors" in [p["name"] for p in alone["picks"]]
    assert main(args + ["--character", "mira"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["character"] == "Mira"
    assert out["prompt"] == "mira_oc, with vessamb in a gothic castle, analog film photo"
    assert out["kept"] == [{"name": "xl/mira_oc_xl.safetensors", "strength_model": 0.9, "strength_clip": 0.9}]
    assert [p["name"] for p in out["picks"]] == ["xl/film_photo_xl.safetensors", "xl/castle_detail.safetensors"]
    assert {"name": "xl/vessa_moonblade.safetensors", "score": 0.0,
            "reason": "character: the stack keeps character preset Mira, and no other character is added to it"} \
        in out["rejected"]
    assert main(args + ["--character", "Nobody"]) == 2
    assert capsys.readouterr().err.startswith("kubik loras: error: --character: no character named 'Nobody' "
                                              "(known: Mira)")
