"""Style, content type and negative prompt on prompts people really write.

The expectations are what a person reading the prompt would say. They cover SD1.5/SDXL booru
tags, Pony scores, natural-language FLUX prompts, Midjourney-style prompts, logos, pixel art,
photography genres, architecture, food, vehicles, animals and abstract art.
"""
import pytest

from kubik_core.prompting import analyze_prompt


def _terms(negative: str) -> set[str]:
    return {term.strip() for term in negative.split(",") if term.strip()}


# (style, content type, prompt)
PROMPTS = [
    # a figure in a setting: a scene, or a character picture when the figure is in focus
    ("cinematic", "scene", "Cinematic still of a lone astronaut standing on a red desert planet, "
     "two moons in the sky, dust storm approaching, anamorphic lens flare"),
    ("anime", "character", "(masterpiece:1.2), best quality, 1girl, solo, long hair, looking at "
     "viewer, smile, outdoors, sky, tree, grass, nature, scenery, mountain, field"),
    ("anime", "character", "masterpiece, best quality, 1boy, solo, black hair, school uniform, "
     "classroom, sitting, desk, window, sunlight"),
    ("anime", "character", "score_9, score_8_up, score_7_up, 1girl, solo, cowboy shot, city "
     "street, night, neon lights, rain"),
    ("photographic", "scene", "a man in a business suit walking through a busy city street, "
     "street photography"),
    ("comic", "scene", "comic book cover of a superhero flying over a city, halftone, bold colors"),
    ("painting", "character", "a knight standing in a misty forest, digital painting, artstation"),
    ("anime", "group", "anime screencap, 2girls, sitting on a bench, park, cherry blossoms, spring"),
    # no figure: the place is the picture
    ("anime", "landscape", "no humans, scenery, mountain, lake, sunset, clouds, masterpiece, "
     "best quality"),
    ("photographic", "landscape", "a wooden cabin by a lake surrounded by pine forest, morning "
     "mist, landscape photography"),
    ("concept_art", "architecture", "epic fantasy castle on a cliff, concept art, matte painting, "
     "dramatic sky"),
    ("photographic", "architecture", "the eiffel tower at night, long exposure, city lights, "
     "wide angle"),
    ("photographic", "interior", "A cozy coffee shop interior with warm lighting, wooden "
     "furniture and plants, photorealistic"),
    ("watercolor", "cityscape", "watercolor painting of a venetian canal with gondolas"),
    # photography genres
    ("photographic", "product", "product shot of a ceramic teapot on a marble table, studio "
     "lighting, softbox, 8k"),
    ("photographic", "food", "food photography of a stack of pancakes with blueberries and maple "
     "syrup, natural light"),
    ("photographic", "food", "a gourmet burger with melted cheese on a wooden board, food "
     "photography, 50mm"),
    ("photographic", "architecture", "architecture photo of a modern glass house in the woods, "
     "golden hour"),
    ("photographic", "animal", "macro photo of a dew-covered spider web at dawn"),
    ("photographic", "character", "RAW photo, a man sitting in a cafe, DSLR, soft lighting, film grain"),
    ("photographic", "portrait", "shot on Canon EOS R5, portrait of an old fisherman, 85mm, f/1.8"),
    ("photographic", "portrait", "black and white photo of an old man's face, high contrast, "
     "dramatic lighting"),
    ("photographic", "portrait", "portrait of a woman in a sunflower field, bokeh, golden hour, 85mm"),
    ("photographic", "animal", "A photograph of a golden retriever puppy running through a field "
     "of sunflowers, shallow depth of field"),
    ("photographic", "animal", "a majestic bald eagle perched on a branch, wildlife photography, "
     "telephoto lens"),
    ("photographic", "vehicle", "a red vintage muscle car parked on a desert highway at sunset, "
     "automotive photography"),
    # other media
    ("3d_render", "vehicle", "a futuristic motorcycle, 3d render, octane render, studio lighting"),
    ("3d_render", "animal", "low poly 3d render of a fox in an autumn forest"),
    ("illustration", "product", "minimalist vector logo of a fox head, flat design, orange and "
     "white, simple background"),
    ("illustration", "animal", "a cute cartoon cat wearing a wizard hat, children's book illustration"),
    ("pixel_art", "character", "16-bit pixel art of a knight fighting a dragon in a castle"),
    ("sketch", "character", "charcoal sketch of a ballerina mid-pose"),
    ("abstract", "abstract", "abstract fluid art, swirling pastel colors, marble texture"),
]


@pytest.mark.parametrize("style,content,prompt", PROMPTS)
def test_style_and_content_type_agree_with_a_reader(style, content, prompt):
    analysis = analyze_prompt(prompt)
    assert (analysis.style, analysis.content_type) == (style, content)


def test_a_person_in_a_landscape_is_no_landscape_and_people_stay_allowed():
    for prompt in (PROMPTS[0][2], PROMPTS[1][2]):
        analysis = analyze_prompt(prompt)
        assert analysis.content_type != "landscape"
        assert not _terms(analysis.negative) & {"people", "person"}
    # the same place without a figure is a landscape that keeps people out
    empty = analyze_prompt("a red desert planet, two moons in the sky, dust storm approaching, "
                           "scenery, landscape")
    assert empty.content_type == "landscape"
    assert {"people", "person"} <= _terms(empty.negative)


def test_words_that_usually_qualify_a_place_make_no_figure():
    analysis = analyze_prompt("concept art of an alien planet landscape with giant crystal spires")
    assert analysis.content_type == "landscape"


# (prompt, terms the negative must not contain, a term it must keep to show the style is right)
CONTRADICTIONS = [
    # a human subject vs a negative that bans people
    ("abstract portrait of a woman, geometric shapes, cubism", {"people", "person", "face",
                                                                "figurative"}, "photo"),
    ("a knight on a hill overlooking a valley, scenery, landscape", {"people", "person"}, "lowres"),
    # text, lettering, logos with words
    ('a logo for a coffee brand called "Bean There", with bold typography', {"text"}, "photo"),
    ("vintage poster with hand lettering that reads 'summer', illustration", {"text"}, "photo"),
    ('a sign that says "OPEN" in neon letters on a brick wall at night, photo', {"text"}, "cartoon"),
    # blur requested under another name
    ("photo of a city street at night, motion blur, long exposure", {"blurry", "out of focus"},
     "cartoon"),
    ("portrait of a woman, bokeh, 85mm, photo", {"blurry", "out of focus"}, "cartoon"),
    ("photo of a flower, shallow depth of field", {"blurry", "out of focus"}, "cartoon"),
    # black and white vs monochrome / colour bans
    ("manga panel, black and white, 1girl, screentone", {"monochrome", "greyscale"}, "photo"),
    ("anime, 1boy, monochrome, greyscale, ink", {"monochrome", "greyscale"}, "photo"),
    ("pencil sketch of a fox, colored pencil", {"color", "colorful"}, "photo"),
    # anime / cartoon / photo styles asked for by name
    ("photorealistic portrait of an anime character cosplayer, dslr", {"anime", "cartoon"},
     "illustration"),
    ("1girl, anime, (photorealistic:1.2), realistic lighting", {"photo", "photorealistic",
                                                                "realistic"}, "bad hands"),
    ("cute cartoon fox, 3d, octane render, blender", {"3d render", "cgi", "3d", "cartoon"},
     "lowres"),
    # grain, clutter, duplicates, horizon
    ("analog photo of a woman on a beach, film grain, kodak portra 400", {"grainy"}, "cartoon"),
    ("character sheet of a knight, turnaround, multiple views, concept art",
     {"duplicate", "duplicate faces"}, "photo"),
    ("dutch angle photo of a lighthouse in a storm, scenery", {"tilted horizon"}, "cartoon"),
]


@pytest.mark.parametrize("prompt,banned,kept", CONTRADICTIONS)
def test_negative_never_contradicts_the_positive(prompt, banned, kept):
    terms = _terms(analyze_prompt(prompt).negative)
    assert not terms & banned, f"negative contradicts the prompt: {sorted(terms & banned)}"
    assert kept in terms


def test_the_same_styles_keep_those_terms_when_the_positive_does_not_ask_otherwise():
    """The contradiction rules drop terms only on cue: without one the terms are there."""
    assert {"blurry", "out of focus", "grainy", "cartoon"} <= _terms(
        analyze_prompt("photo of a city street at night, 35mm lens").negative)
    assert {"monochrome", "greyscale", "photo"} <= _terms(
        analyze_prompt("anime, 1girl, manga style, cherry blossoms").negative)
    assert "text" in _terms(analyze_prompt("a red fox in the snow, photo").negative)
    assert {"color", "colorful"} <= _terms(analyze_prompt("pencil sketch of a fox").negative)


def test_function_words_clash_with_nothing():
    """'portrait of a woman' shares only "of" with "out of focus": the term stays."""
    assert "out of focus" in _terms(analyze_prompt("photo, portrait of a woman, 85mm").negative)
