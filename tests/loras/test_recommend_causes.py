"""Each cause of issue 23, on real LoRA files with the sidecars users keep:

* a character, real person or unknown named LoRA is picked only when the prompt names it;
* trigger words come only from trigger fields, and Apply LoRA Stack appends only those missing;
* a LoRA's kind and medium come from its metadata, and only style LoRAs clash;
* LoRAs of another SDXL variant are filtered unless allowed;
* no padding: only LoRAs the prompt asks for, and the reasons say why the others were left out.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubik_core.loras import LoraIndex, recommend, scan_library
from kubik_core.loras.profile import profile_of
from kubik_core.loras.stack import LoraStack, StackItem
from kubik_core.loras.synthetic import kohya_metadata, write_lora
from kubik_core.prompting import analyze_prompt

NOISE = {"1girl": 80, "solo": 70, "looking at viewer": 40, "portrait": 30, "landscape": 20}


def by_hash(base: str, model: str, trained: list[str], description: str = "", poi: bool = False) -> dict:
    """A CivitAI Helper .civitai.info: the by-hash answer, whose model has no tags."""
    return {"id": 1, "name": "v1.0", "baseModel": base, "trainedWords": trained, "description": description,
            "stats": {"downloadCount": 5000, "thumbsUpCount": 400, "thumbsDownCount": 3},
            "model": {"name": model, "type": "LORA", "nsfw": False, "poi": poi}}


def lora_manager(base: str, model: str, tags: list[str], trained: list[str], description: str = "") -> dict:
    return {"file_name": "", "model_name": model, "base_model": base, "tags": tags, "modelDescription": description,
            "civitai": {"baseModel": base, "trainedWords": trained,
                        "model": {"name": model, "type": "LORA", "tags": tags}},
            "usage_tips": "{}"}


def add(root: Path, stem: str, base: str = "sdxl", tags: dict | None = None, civitai: dict | None = None,
        manager: dict | None = None, a1111: dict | None = None, **metadata: str) -> None:
    meta = kohya_metadata(base, stem, tags=tags or NOISE)
    meta.update(metadata)
    write_lora(root / f"{stem}.safetensors", "kohya", base, metadata=meta, seed=len(stem))
    for suffix, data in ((".civitai.info", civitai), (".metadata.json", manager), (".json", a1111)):
        if data is not None:
            (root / f"{stem}{suffix}").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("causes")
    # characters and people: only their names call them
    add(root, "vessa_moonblade", civitai=by_hash("SDXL 1.0", "Vessa Moonblade (OC)",
                                                 ["vessamb", "silver hair, elf ears, green cloak"]),
        tags={"vessamb": 40, **NOISE, "silver hair": 40, "elf ears": 35})
    add(root, "wren_hollis_actress", civitai=by_hash("SDXL 1.0", "Wren Hollis", ["wren hollis"], poi=True))
    add(root, "sparrow_skyguard", manager=lora_manager("SDXL 1.0", "Sparrow (Skyguard Saga)",
                                                       ["character", "anime", "girl", "pilot"],
                                                       ["sparrow \\(skyguard\\)", "flight jacket, goggles"]))
    add(root, "kade_oc_xl")                                      # no sidecar: its name says OC
    add(root, "character_turnaround_xl", manager=lora_manager(
        "SDXL 1.0", "Character Turnaround", ["concept", "character", "reference sheet"],
        ["turnaround sheet, multiple views"]))
    # styles, clothing, concepts, tools, speed
    add(root, "gouache_style_xl", tags={**NOISE, "gouache": 50},
        manager=lora_manager("SDXL 1.0", "Gouache Painting", ["style", "painting"], ["gouache painting"]))
    add(root, "mosaic_tiles_xl", civitai=by_hash("SDXL 1.0", "Mosaic Tiles Style", ["mosaic tiles"]))
    add(root, "ballgown_outfit_xl", tags={**NOISE, "ballgown": 60},
        manager=lora_manager("SDXL 1.0", "Ballgown Outfit", ["clothing", "dress", "anime"], ["ballgown"]))
    add(root, "frozen_in_amber_xl", civitai=by_hash("SDXL 1.0", "Frozen in Amber", ["frozen in amber"],
                                                    "<p>Concept LoRA: anything trapped in amber.</p>"))
    add(root, "more_details_xl", manager=lora_manager("SDXL 1.0", "More Details", ["tool", "detail"], []))
    add(root, "sdxl_lightning_8step_lora")
    # variants
    add(root, "pony_gouache", base="sdxl", civitai=by_hash("Pony", "Gouache Painting (Pony)", ["gouache painting"]))
    add(root, "illu_mosaic", base="sdxl", civitai=by_hash("Illustrious", "Mosaic (Illustrious)", ["mosaic tiles"]))
    add(root, "noob_mosaic", base="sdxl", civitai=by_hash("NoobAI", "Mosaic (NoobAI)", ["mosaic tiles"]))
    return root


@pytest.fixture(scope="module")
def index(library) -> LoraIndex:
    return LoraIndex(scan_library([library]))


def picks(index, prompt: str, family: str = "sdxl", **kwargs) -> list[str]:
    return [c.name for c in recommend(index, analyze_prompt(prompt), family=family, **kwargs).picks]


# ----------------------------------------------------------------------------- unrequested characters
@pytest.mark.parametrize("prompt", [
    "an elf woman with silver hair in a green cloak, fantasy, forest",      # a character's descriptors
    "RAW photo of an old woman, wrinkles, 85mm",                             # a category ("character")
    "a fighter pilot in a flight jacket and goggles, anime",                 # trigger descriptors
    "a sparrow on a branch, spring",                                         # a one-word name, no series
    "portrait of a young actress on a film set",
])
def test_characters_and_people_are_not_picked_on_category_words(index, prompt):
    rec = recommend(index, analyze_prompt(prompt), family="sdxl")
    people = {"vessa_moonblade.safetensors", "wren_hollis_actress.safetensors", "sparrow_skyguard.safetensors",
              "kade_oc_xl.safetensors"}
    assert not people & {c.name for c in rec.picks}


@pytest.mark.parametrize("prompt, name", [
    ("vessamb reading in a library", "vessa_moonblade.safetensors"),                 # its trigger
    ("vessa moonblade reading in a library", "vessa_moonblade.safetensors"),         # its name
    ("wren hollis on a red carpet", "wren_hollis_actress.safetensors"),              # a real person, named
    ("sparrow (skyguard) in the cockpit", "sparrow_skyguard.safetensors"),           # one-word name + series
    ("kade standing in the rain", "kade_oc_xl.safetensors"),                          # no sidecar, named
])
def test_a_named_character_is_picked(index, prompt, name):
    assert name in picks(index, prompt)


def test_the_reasons_say_a_character_needs_its_name(index):
    rec = recommend(index, analyze_prompt("an elf woman with silver hair in a green cloak"), family="sdxl")
    vessa = next(c for c in rec.rejected if c.name == "vessa_moonblade.safetensors")
    assert vessa.reason == ("character: picked only when the prompt names it (with 'vessa moonblade' or 'vessamb')")


def test_a_concept_tagged_character_without_an_identity_is_a_concept(index, library):
    turnaround = next(p for e, p in zip(index.entries, index.profiles)
                      if e.name == "character_turnaround_xl.safetensors")
    assert (turnaround.kind, turnaround.named_strictly) == ("concept", False)
    assert "character_turnaround_xl.safetensors" in picks(index, "turnaround sheet of a robot, multiple views")


# ----------------------------------------------------------------------------- trigger words
def test_trigger_words_come_only_from_trigger_fields(tmp_path):
    add(tmp_path, "tags_only", tags={"1girl": 90, "castle": 40})
    add(tmp_path, "spec_phrase", **{"modelspec.trigger_phrase": "spc style, spc"})
    add(tmp_path, "ss_list", ss_trigger_words=json.dumps(["lst one", "lst two"]))
    add(tmp_path, "ss_broken", ss_trigger_words="[" * 100 + "]" * 100)
    add(tmp_path, "activation", a1111={"activation text": "act word", "sd version": "SDXL"})
    add(tmp_path, "manager", manager=lora_manager("SDXL 1.0", "M", ["style"], ["mgr word"]))
    add(tmp_path, "dreambooth", ss_datasets=json.dumps([{"subsets": [{"class_tokens": "zkx dog"}]}]))
    entries = {e.stem: e for e in scan_library([tmp_path]).entries.values()}
    assert entries["tags_only"].triggers == []
    assert entries["spec_phrase"].triggers == ["spc style", "spc"]
    assert entries["ss_list"].triggers == ["lst one", "lst two"]
    assert entries["ss_broken"].triggers == [] and entries["ss_broken"].problems == [
        "ss_trigger_words: JSON is nested 100 levels deep (limit 64); trigger words ignored"]
    assert entries["activation"].triggers == ["act word"]
    assert entries["manager"].triggers == ["mgr word"]
    assert entries["dreambooth"].triggers == ["zkx dog"]


def test_apply_appends_only_the_trigger_words_missing_from_the_prompt():
    stack = LoraStack([StackItem("a.safetensors", triggers=["vessamb", "silver hair, elf ears"]),
                       StackItem("b.safetensors", triggers=["sparrow \\(skyguard\\)", "art", "vessamb"])])
    prompt = "(vessamb:1.2), Silver_Hair, Sparrow \\(Skyguard\\), a party"
    assert stack.triggers_missing_from(prompt) == ["elf ears", "art"]   # "art" is not in "party"


def test_apply_node_appends_missing_triggers_once(pack, run_node, library, monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("KUBIK_LORAS_DIR", str(library))
    monkeypatch.setenv("KUBIK_CACHE_DIR", str(tmp_path / "cache"))
    bridge = sys.modules[f"{pack.__name__}.nodes.comfy_bridge"]
    applied = []

    def apply_lora(model, clip, path, strength_model, strength_clip):   # ComfyUI's loader (outside the pack)
        applied.append(Path(path).name)
        return model, clip

    monkeypatch.setattr(bridge, "apply_lora", apply_lora)
    stack = LoraStack([StackItem("vessa_moonblade.safetensors", triggers=["vessamb", "silver hair, elf ears"])])
    model, clip = object(), object()
    out = run_node("KubikApplyLoraStack", model=model, clip=clip, lora_stack=stack.to_dict(),
                   add_trigger_words=True, prompt="(VessAmb:1.1), elf ears, forest")
    assert out == (model, clip, "(VessAmb:1.1), elf ears, forest, silver hair")
    assert applied == ["vessa_moonblade.safetensors"]


# ----------------------------------------------------------------------------- kinds, media, clashes
def test_kind_and_medium_come_from_metadata_not_training_tags(index):
    profiles = {e.stem: p for e, p in zip(index.entries, index.profiles)}
    assert (profiles["ballgown_outfit_xl"].kind, profiles["ballgown_outfit_xl"].medium) == ("clothing", "")
    assert (profiles["gouache_style_xl"].kind, profiles["gouache_style_xl"].medium) == ("style", "painting")
    assert (profiles["mosaic_tiles_xl"].kind, profiles["mosaic_tiles_xl"].medium) == ("style", "mosaic")
    assert profiles["frozen_in_amber_xl"].kind == "concept"
    assert profiles["wren_hollis_actress"].kind == "person"
    assert profiles["more_details_xl"].kind == "detail" and profiles["more_details_xl"].adds_detail
    assert profiles["sdxl_lightning_8step_lora"].kind == "speed"


def test_a_style_and_clothing_with_anime_tags_do_not_clash(index):
    assert picks(index, "portrait of a woman in a ballgown, gouache painting") == [
        "gouache_style_xl.safetensors", "ballgown_outfit_xl.safetensors"]


def test_two_style_media_are_never_stacked(index):
    rec = recommend(index, analyze_prompt("gouache painting of a harbour, mosaic tiles"), family="sdxl")
    assert len([c for c in rec.picks if c.kind == "style"]) == 1
    assert any("style clashes with" in c.reason for c in rec.rejected)


# ----------------------------------------------------------------------------- variants
def test_other_sdxl_variants_are_filtered_by_default(index):
    assert picks(index, "gouache painting of a harbour") == ["gouache_style_xl.safetensors"]
    assert picks(index, "gouache painting of a harbour", family="pony") == ["pony_gouache.safetensors"]
    assert picks(index, "mosaic tiles of a fish", family="illustrious") == ["illu_mosaic.safetensors"]
    rec = recommend(index, analyze_prompt("mosaic tiles of a fish"), family="illustrious", max_loras=3)
    assert {c.name for c in rec.picks + rec.rejected} >= {"noob_mosaic.safetensors"}   # NoobAI fits Illustrious
    assert rec.filtered == {"other SDXL variant": 1}                                    # the plain SDXL one
    allowed = recommend(index, analyze_prompt("mosaic tiles of a fish"), family="illustrious",
                        allow_other_variants=True, max_loras=3)
    assert "mosaic_tiles_xl.safetensors" in {c.name for c in allowed.picks + allowed.rejected}


# ----------------------------------------------------------------------------- no padding
def test_only_what_the_prompt_asks_for_and_why_not_the_rest(index):
    rec = recommend(index, analyze_prompt("a dragonfly frozen in amber, painting, a glowing elf sparrow"),
                    family="sdxl", max_loras=3)
    assert [c.name for c in rec.picks] == ["frozen_in_amber_xl.safetensors"]
    reasons = {c.name: c.reason for c in rec.rejected}
    assert reasons["gouache_style_xl.safetensors"] == ("the prompt does not ask for it clearly enough (evidence "
                                                       "0.40 < 0.55: the prompt asks for painting, its medium)")
    assert reasons["sparrow_skyguard.safetensors"].startswith("character: picked only when the prompt names it")


def test_speed_loras_are_never_picked_from_a_prompt(index):
    rec = recommend(index, analyze_prompt("sdxl lightning 8step lora, a storm with lightning"), family="sdxl")
    assert "sdxl_lightning_8step_lora.safetensors" not in [c.name for c in rec.picks]
    speed = next(c for c in rec.rejected if c.name == "sdxl_lightning_8step_lora.safetensors")
    assert speed.reason.startswith("speed LoRA: it needs its own sampler settings")


def test_a_detail_tool_only_when_the_prompt_asks_for_detail(index):
    assert "more_details_xl.safetensors" in picks(index, "a clockwork owl, intricate details")
    assert "more_details_xl.safetensors" not in picks(index, "a clockwork owl")


def test_the_bar_is_a_parameter(index):
    with pytest.raises(ValueError, match="min_evidence must be a number from 0 to 1"):
        recommend(index, analyze_prompt("a clockwork owl"), min_evidence=2)


def test_a_file_name_in_camel_case_is_read_as_words(tmp_path):
    add(tmp_path, "ClayAnimationXL")                              # no sidecar, no title of its own
    add(tmp_path, "VesperBlackwoodLoRA", tags={"1girl": 40, "vesper": 40})
    index = LoraIndex(scan_library([tmp_path]))
    clay, vesper = index.profiles
    assert (clay.kind, clay.medium, clay.names[0]) == ("style", "clay", ("clay", "animation"))
    assert vesper.named_strictly and vesper.names[0] == ("vesper", "blackwood")
    assert picks(index, "clay animation of a dog") == ["ClayAnimationXL.safetensors"]
    assert picks(index, "vesper blackwood in a garden") == ["VesperBlackwoodLoRA.safetensors"]
    assert picks(index, "a garden at vesper time") == []


@pytest.mark.parametrize("written, names, qualifiers", [
    ("Samus Aran (Metroid) [Pony]", [("samu", "aran")], {"metroid"}),
    ("Orrin the Wanderer", [("orrin", "wanderer"), ("orrin",)], set()),
    ("Yor Forger / Thorn Princess", [("yor", "forger"), ("thorn", "princess")], set()),
    ("Geralt - The Witcher 3", [("geralt",)], {"witcher"}),
    ("nyx_valkyrie_oc_v2-000012", [("nyx", "valkyrie")], set()),
])
def test_names_are_read_as_people_write_them(written, names, qualifiers):
    from kubik_core.loras.profile import split_name

    assert split_name(written) == (names, qualifiers)


def test_profile_reads_a_real_entry(library):
    entry = next(e for e in scan_library([library]).entries.values() if e.stem == "sparrow_skyguard")
    profile = profile_of(entry)
    assert profile.kind == "character" and profile.names[0] == ("sparrow",) and "skyguard" in profile.qualifiers
