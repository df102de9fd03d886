"""The recommender on a real scanned library."""
from __future__ import annotations

import json

import pytest

from kubik_core.loras import LoraIndex, recommend, scan_library
from kubik_core.loras.stack import LoraStack, StackItem, rebalance
from kubik_core.loras.synthetic import kohya_metadata, write_lora
from kubik_core.prompting import analyze_prompt


@pytest.fixture
def index(library_dir):
    return LoraIndex(scan_library([library_dir]))


def _names(rec):
    return [c.name for c in rec.picks]


def test_picks_what_the_prompt_asks_for(index):
    rec = recommend(index, analyze_prompt("analog film photo of a woman in a cafe, film grain"), family="sdxl")
    assert _names(rec)[0] == "xl/film_photo_xl.safetensors"
    pick = rec.picks[0]
    assert "trigger 'analog film photo' in the prompt" in pick.reason
    assert set(pick.factors) >= {"semantic", "keyword", "popularity", "history"}
    assert (pick.strength_model, pick.strength_clip) == (0.7, 0.6)   # usage tips
    assert "usage tips" in pick.strength_reason
    assert rec.trigger_text() == "analog film photo"


def test_other_base_architectures_are_filtered(index):
    prompt = analyze_prompt("watercolor painting of a cat, wtrclr")
    xl = recommend(index, prompt, family="sdxl")
    assert not any(n.startswith("sd15/") for n in _names(xl))
    assert xl.filtered.get("other base architecture", 0) >= 1
    sd15 = recommend(index, prompt, family="sd15")
    assert _names(sd15)[0] == "sd15/watercolor_style.safetensors"


def test_other_sdxl_variants_are_filtered_unless_allowed(index):
    prompt = analyze_prompt("cartoon style, a dog")
    on_sdxl = recommend(index, prompt, family="sdxl")
    assert _names(on_sdxl) == [] and on_sdxl.filtered == {"other SDXL variant": 1}
    assert any("xl/pony_cartoon.safetensors; allow_other_variants" in n for n in on_sdxl.notes)
    on_pony = recommend(index, prompt, family="pony")
    allowed = recommend(index, prompt, family="sdxl", allow_other_variants=True)
    assert _names(on_pony) == _names(allowed) == ["xl/pony_cartoon.safetensors"]
    assert allowed.picks[0].score < on_pony.picks[0].score
    assert "made for pony, the model is sdxl: may transfer poorly" in allowed.picks[0].reason
    assert "made for" not in on_pony.picks[0].reason


def test_blocklist_and_content_level(library_dir):
    write_lora(library_dir / "xl" / "spicy.safetensors", "kohya", "sdxl", metadata=kohya_metadata(
        "sdxl", "spicy", tags={"film photo": 10}))
    (library_dir / "xl" / "spicy.civitai.info").write_text(json.dumps({"baseModel": "SDXL 1.0", "nsfwLevel": 8,
                                                                       "trainedWords": ["film photo"]}))
    index = LoraIndex(scan_library([library_dir]))
    prompt = analyze_prompt("film photo, analog film photo")
    safe = recommend(index, prompt, family="sdxl")
    assert "xl/spicy.safetensors" not in _names(safe) and safe.filtered["content level"] == 1
    everything = recommend(index, prompt, family="sdxl", content="everything")
    assert "xl/spicy.safetensors" in _names(everything)
    blocked = recommend(index, prompt, family="sdxl", blocklist="film_photo*, spicy", content="everything")
    assert _names(blocked) == [] and blocked.filtered["blocklist"] == 2


def test_clashing_styles_are_not_stacked(index):
    rec = recommend(index, analyze_prompt("anime lineart girl, analog film photo, film grain"), family="sdxl",
                    max_loras=4)
    names = _names(rec)
    assert not {"xl/film_photo_xl.safetensors", "xl/anime_lineart_xl.safetensors"} <= set(names)
    assert any("clashes with" in c.reason for c in rec.rejected)


def test_history_moves_the_ranking(index):
    prompt = analyze_prompt("gothic castle on a hill, anime lineart")
    neutral = recommend(index, prompt, family="sdxl", max_loras=1, min_evidence=0.0)
    loser = neutral.picks[0].name
    history = {loser: 0.0}
    history.update({c.name: 1.0 for c in neutral.rejected})
    shifted = recommend(index, prompt, family="sdxl", max_loras=1, min_evidence=0.0, history=history,
                        weights={"history": 0.9})
    assert shifted.picks[0].name != loser


def test_unrelated_prompt_picks_nothing(index):
    rec = recommend(index, analyze_prompt("a bowl of ramen"), family="sdxl")
    assert rec.picks == []
    assert "No LoRA picked" in rec.explain("standard")


def test_priority_and_max_loras_limit_the_stack(index):
    prompt = analyze_prompt("gothic castle, anime lineart, cartoon style, 1girl")
    assert len(recommend(index, prompt, family="sdxl", max_loras=1).picks) <= 1
    speed = recommend(index, prompt, family="sdxl", max_loras=6, priority="speed", min_evidence=0.0)
    assert len(speed.picks) <= 2 and any("speed keeps at most 2" in n for n in speed.notes)


def test_strength_from_preferred_weight_and_relevance(index):
    rec = recommend(index, analyze_prompt("gothic castle, towers"), family="sdxl")
    castle = next(c for c in rec.picks if c.name == "xl/castle_detail.safetensors")
    assert castle.strength_model == 0.8 and "preferred weight" in castle.strength_reason
    rec = recommend(index, analyze_prompt("anime lineart, 1girl"), family="sdxl")
    anime = rec.picks[0]
    assert 0.3 <= anime.strength_model <= 1.0 and "relevance" in anime.strength_reason


def test_total_strength_is_rebalanced():
    items = [StackItem("a", 1.5, 1.5), StackItem("b", 1.5, 1.0), StackItem("c", -1.0, 1.0)]
    assert rebalance(items)
    assert abs(sum(abs(i.strength_model) for i in items) - 3.0) < 0.01
    assert items[0].strength_model == items[1].strength_model == 1.125 and items[2].strength_model == -0.75
    assert not rebalance([StackItem("a", 1.0)])


def test_embeddings_replace_bm25_when_given(index):
    vocabulary = ["castle", "anime", "film", "photo", "cartoon"]

    def embed(texts):   # a bag-of-words embedding: a real (if tiny) text embedding
        return [[t.lower().count(w) + 0.01 for w in vocabulary] for t in texts]

    rec = recommend(index, analyze_prompt("castle castle, anime"), family="sdxl", embed=embed, min_evidence=0.0)
    assert rec.similarity == "embeddings"
    assert rec.picks[0].name == "xl/castle_detail.safetensors"


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": {"novelty": 1}}, "unknown weight"),
    ({"weights": {"semantic": -1}}, "must be a number >= 0"),
    ({"weights": {k: 0 for k in ("semantic", "keyword", "popularity", "history")}}, "at least one weight"),
    ({"priority": "fastest"}, "priority must be one of"),
    ({"content": "all"}, "content must be one of"),
    ({"family": "sd9"}, "unknown model family"),
    ({"max_loras": -1}, "max_loras"),
])
def test_bad_arguments(index, kwargs, message):
    with pytest.raises(ValueError, match=message):
        recommend(index, analyze_prompt("castle"), **kwargs)


def test_stack_round_trip_and_explanations(index):
    rec = recommend(index, analyze_prompt("analog film photo"), family="sdxl")
    stack = rec.stack()
    again = LoraStack.from_dict(json.loads(json.dumps(stack.to_dict())))
    assert again.items[0].name == "xl/film_photo_xl.safetensors" and again.items[0].suggested
    from kubik_core.explain import explain

    text = explain(None, None, "detailed", sections=[again])
    assert text.startswith("LoRAs\n- xl/film_photo_xl.safetensors at 0.7")
    assert "film_photo_xl.safetensors 0.7" in explain(None, None, "minimal", sections=[again])
