"""analyze_prompt on realistic prompts, and on the bad inputs users really type."""
from __future__ import annotations

import json

import pytest

from kubik_core.prompting import (COMPLEXITY_DIMENSIONS, CONCEPT_CATEGORIES, CONTENT_TYPES,
                                  MAX_ANALYSED_CHARS, STYLES, EmptyPromptError, PromptAnalysis,
                                  UnknownDialectError, WildcardError, analyze_prompt)

REALISTIC = [
    ("photographic", "portrait", "close-up portrait of an elderly woman with deep wrinkles, "
     "natural window light, 85mm, f/1.8, kodak portra 400, film grain"),
    ("photographic", "landscape", "landscape photography of snowy mountains reflected in a lake "
     "at sunrise, wide angle, long exposure, nikon d850"),
    ("anime", "character", "masterpiece, best quality, 1girl, solo, school uniform, standing, "
     "cherry blossoms, looking at viewer, smile"),
    ("anime", "group", "2girls, holding hands, anime style, festival, yukata, fireworks, night"),
    ("painting", "landscape", "an oil painting of a quiet lake at dusk, impressionism, visible "
     "brushstrokes, by monet"),
    ("watercolor", "animal", "watercolor painting of a fox in a snowy forest, soft colors, "
     "white background"),
    ("3d_render", "character", "cute chibi robot mascot, 3d render, blender, octane render, "
     "studio lighting, pastel colors"),
    ("pixel_art", "cityscape", "pixel art of a cyberpunk city street at night, neon signs, rain, 16-bit"),
    ("concept_art", "landscape", "concept art of an alien planet landscape with giant crystal "
     "spires, environment design, matte painting, trending on artstation"),
    ("sketch", "portrait", "pencil sketch portrait of an old man, crosshatching, sketchbook"),
    ("comic", "character", "comic book style superhero in a dynamic pose, halftone, bold ink lines"),
    ("photographic", "food", "food photography of a bowl of ramen with a soft boiled egg, steam, "
     "shallow depth of field, overhead shot"),
    ("photographic", "product", "product photography of a perfume bottle on white background, "
     "studio lighting, softbox, reflections"),
    ("cinematic", "scene", "cinematic film still of a medieval battle on a muddy field, anamorphic "
     "lens, color graded, dramatic lighting"),
    ("photographic", "architecture", "architectural photography of a brutalist concrete building "
     "facade, overcast sky, symmetrical"),
    ("illustration", "interior", "flat illustration of a cozy bedroom interior with plants and a "
     "cat sleeping on the bed, vector art"),
    ("photographic", "vehicle", "a red sports car drifting on a mountain road, motion blur, "
     "automotive photography, golden hour"),
    ("abstract", "abstract", "abstract art, swirling geometric shapes, vibrant colors, fractal patterns"),
    ("anime", "character", "score_9, score_8_up, score_7_up, source_anime, 1girl, fox ears, "
     "kimono, shrine, autumn leaves"),
    ("photographic", "animal", "wildlife photography of a lion resting in the savanna, telephoto "
     "lens, national geographic"),
]


@pytest.mark.parametrize("style,content,prompt", REALISTIC)
def test_style_and_content_of_realistic_prompts(style, content, prompt):
    analysis = analyze_prompt(prompt)
    assert (analysis.style, analysis.content_type) == (style, content)
    assert 0.3 < analysis.style_confidence <= 1.0
    assert analysis.style in STYLES and analysis.content_type in CONTENT_TYPES


def test_concepts_by_category_with_phrases_matched_whole():
    analysis = analyze_prompt(
        "RAW photo of a samurai and a black cat in a bamboo forest, golden hour, rim lighting, "
        "depth of field, low angle shot, masterpiece, best quality, 8k, oil painting")
    concepts = analysis.concepts
    assert list(concepts) == list(CONCEPT_CATEGORIES)
    assert {"samurai", "black cat"} <= set(concepts["subject"])
    assert "golden hour" in concepts["lighting"] and "rim lighting" in concepts["lighting"]
    assert "depth of field" in concepts["camera"] and "low angle shot" in concepts["camera"]
    assert {"masterpiece", "best quality", "8k"} <= set(concepts["quality"])
    assert {"raw photo", "oil painting"} <= {c.lower() for c in concepts["medium"]}
    assert "forest" in " ".join(concepts["setting"])
    # "golden hour" is one phrase, not the word "hour" somewhere
    assert "hour" not in concepts["lighting"]


def test_container_phrases_are_content_cues_not_subjects():
    # "a bowl of" says the picture is food; the subject is what is in the bowl.
    analysis = analyze_prompt("a bowl of ramen")
    assert analysis.concepts["subject"] == ["ramen"]
    assert analysis.content_type == "food"
    assert analyze_prompt("a plate of dumplings").concepts["subject"] == ["dumplings"]
    bottle = analyze_prompt("a bottle of perfume, product shot")
    assert bottle.concepts["subject"] == ["perfume"] and bottle.content_type == "product"


def test_booru_tags_with_underscores_and_plurals_are_recognised():
    analysis = analyze_prompt("score_9, score_8_up, long_hair, cats, close_up")
    assert {"score_9", "score_8_up"} <= set(analysis.concepts["quality"])
    assert "cat" in analysis.concepts["subject"]
    assert "close-up" in analysis.concepts["camera"]


def test_negative_prompt_suits_the_style_and_never_contradicts_the_positive():
    photo = analyze_prompt("photo of a woman, 85mm, kodak portra 400")
    anime = analyze_prompt("anime, 1girl, masterpiece, best quality")
    assert "cartoon" in photo.negative and "anime" in photo.negative
    assert "realistic" in anime.negative and "photo" in anime.negative
    assert "anime" not in [t.strip() for t in anime.negative.split(",")]
    blurry = analyze_prompt("photo of a woman, blurry background, 3d render reference")
    terms = {t.strip() for t in blurry.negative.split(",")}
    assert not {"blurry", "3d render", "out of focus"} & terms
    pony = analyze_prompt("score_9, score_8_up, 1girl")
    assert pony.negative.startswith("score_6, score_5, score_4")


def test_complexity_dimensions_in_range_and_ordered_by_richness():
    simple = analyze_prompt("a cat")
    rich = analyze_prompt(
        "a knight and a dragon and a princess fighting on a castle bridge in the foreground, "
        "a village in the background, volumetric lighting, rim light, god rays, low angle shot, "
        "wide angle, depth of field, oil painting, 3d render, anime style, intricate details, "
        "(masterpiece:1.2), best quality")
    for analysis in (simple, rich):
        assert set(analysis.complexity) == set(COMPLEXITY_DIMENSIONS) | {"overall"}
        assert all(0.0 <= v <= 1.0 for v in analysis.complexity.values())
    for dimension in (*COMPLEXITY_DIMENSIONS, "overall"):
        assert rich.complexity[dimension] >= simple.complexity[dimension], dimension
    assert rich.complexity["overall"] > simple.complexity["overall"] + 0.3
    assert rich.complexity["style_mix"] > 0.3


def test_cleaned_positive_normalises_whitespace_and_commas_and_keeps_weights():
    analysis = analyze_prompt("  a cat ,, sitting,(on a mat:1.2) ,\n\n  , \\(cute\\)  ,  ")
    # runs of commas and spaces before commas are tidied; "a,b" is left as written
    assert analysis.cleaned == "a cat, sitting,(on a mat:1.2), \\(cute\\)"
    assert ("on a mat", 1.2) in analysis.segments


def test_dynamic_prompts_resolve_from_the_seed(tmp_path):
    (tmp_path / "animal.txt").write_text("fox\nowl\nbear\n", encoding="utf-8")
    results = {analyze_prompt("a {red|blue} __animal__", seed=s, wildcards_dir=tmp_path).cleaned
               for s in range(30)}
    assert len(results) > 3 and all("{" not in r and "__" not in r for r in results)
    again = analyze_prompt("a {red|blue} __animal__", seed=5, wildcards_dir=tmp_path)
    assert again.cleaned == analyze_prompt("a {red|blue} __animal__", seed=5,
                                           wildcards_dir=tmp_path).cleaned
    assert again.prompt == "a {red|blue} __animal__" and again.expanded == again.cleaned
    with pytest.raises(WildcardError):
        analyze_prompt("__../../etc/passwd__", wildcards_dir=tmp_path)


def test_a1111_analysis_reports_structure():
    analysis = analyze_prompt("a [red|blue] car [day:night:0.5] BREAK (rain:1.2) AND dog:0.5",
                              dialect="a1111")
    structure = analysis.structure
    assert structure["breaks"] == 1 and len(structure["and_parts"]) == 2
    assert structure["schedules"] == [{"before": "day", "after": "night", "at_step": 10}]
    assert ("rain", 1.2) in analysis.segments
    assert analyze_prompt("a car").structure == {}


def test_to_dict_is_json_and_round_trips():
    analysis = analyze_prompt("a (cat:1.2) in a garden, photo")
    data = json.loads(json.dumps(analysis.to_dict()))
    for key in ("segments", "concepts", "style", "content_type", "complexity", "negative"):
        assert key in data
    assert data["segments"][1] == ["cat", 1.2]
    assert PromptAnalysis.from_dict(data) == analysis


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("text", ["", "   ", "\n\t", ", , ,", "\x00\x01\x02", "( )"])
def test_empty_prompt_is_a_clear_error(text):
    with pytest.raises(EmptyPromptError, match="prompt is empty"):
        analyze_prompt(text)
    assert issubclass(EmptyPromptError, ValueError)


def test_unknown_dialect_lists_the_valid_ones():
    with pytest.raises(UnknownDialectError, match="valid dialects: comfyui, a1111"):
        analyze_prompt("a cat", dialect="midjourney")


def test_huge_prompt_is_capped_and_noted():
    text = ", ".join(f"(a red fox:1.{i % 9}) in a forest number {i}" for i in range(4000))
    assert len(text) > 100_000
    analysis = analyze_prompt(text)
    assert analysis.cleaned == text                       # the positive keeps everything
    analysed = sum(len(t) for t, _ in analysis.segments)
    assert analysed <= MAX_ANALYSED_CHARS
    assert any("only the first" in note for note in analysis.notes)
    assert "fox" in analysis.concepts["subject"]


def test_huge_pathological_brackets_finish():
    analysis = analyze_prompt("(" * 60_000 + "x" + ")" * 60_000)
    assert analysis.notes  # capped and/or unbalanced after the cap


@pytest.mark.parametrize("text,note", [
    ("a (cat sitting", "never closed"),
    ("a cat) sitting", "no matching '('"),
    ("a (cat:abc) sitting", "'abc' is not a number"),
])
def test_malformed_weights_are_noted_not_fatal(text, note):
    analysis = analyze_prompt(text)
    assert any(note in n for n in analysis.notes)
    assert "cat" in analysis.concepts["subject"]


def test_extreme_weights_do_not_break_the_scores():
    import math

    analysis = analyze_prompt("(anime:inf), (photo:nan), (oil painting:1e9), a cat")
    assert analysis.style in STYLES
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in analysis.complexity.values())
    assert math.isfinite(analysis.style_confidence)
    assert any("not finite" in note for note in analysis.notes)


def test_repeated_problems_are_noted_once():
    analysis = analyze_prompt("(a:abc) (b:abc) (c:abc)")
    assert sum("'abc' is not a number" in note for note in analysis.notes) == 1


def test_control_characters_are_stripped_and_noted():
    analysis = analyze_prompt("a cat\x00 on a\x07 mat\x1b")
    assert analysis.cleaned == "a cat on a mat"
    assert any("removed 3 control character" in n for n in analysis.notes)


def test_emoji_are_kept_as_text():
    analysis = analyze_prompt("a 🐱 cat wearing a 👑 crown, 😀")
    assert "🐱" in analysis.cleaned and "👑" in analysis.cleaned
    assert "cat" in analysis.concepts["subject"] and "crown" in analysis.concepts["subject"]
    assert not analysis.notes


def test_prompt_of_the_wrong_type_is_refused():
    with pytest.raises(ValueError, match="must be text"):
        analyze_prompt(None)


def test_midjourney_parameters_are_split_off_and_noted():
    analysis = analyze_prompt("a lighthouse at dusk, cinematic --ar 16:9 --v 6 --no boats, people")
    assert analysis.cleaned == "a lighthouse at dusk, cinematic"
    assert analysis.parameters == {"ar": "16:9", "v": "6", "no": "boats, people"}
    assert analysis.negative.startswith("boats, people, ")
    assert any("Midjourney parameters" in note for note in analysis.notes)
    assert all("--" not in text for text, _ in analysis.segments)
    plain = analyze_prompt("a--b x -- y")
    assert plain.cleaned == "a--b x -- y" and plain.parameters == {}
    with pytest.raises(EmptyPromptError):
        analyze_prompt("--ar 16:9")


def test_cinematic_is_a_style_and_window_light_is_lighting():
    """Issue 23: 'cinematic' is a style word, and 'soft window light' is lighting, not a setting."""
    portrait = analyze_prompt("cinematic close-up portrait of an old fisherman, soft window light")
    assert portrait.style == "cinematic"
    assert "soft window light" in portrait.concepts["lighting"]
    assert "window" not in " ".join(portrait.concepts["setting"])
