"""Negative prompts suited to a style and content type, without fighting the positive prompt.

A negative prompt is assembled from term lists (style first, then content, then generic
defects). A term is left out when it contradicts the positive prompt:

* it shares a word with it (function words such as "of" aside): a prompt asking for "blurry
  background" gets no "blurry", an anime prompt asking for "3d" gets no "3d";
* or the positive asks for something the term bans under another name (TOPICS): "bokeh" or
  "motion blur" rule out "blurry", a person subject rules out "people", "lettering" or a logo
  rules out "text", "black and white" rules out "monochrome", "anime" rules out "cartoon".

The analyzer reads the positive prompt once per comma-separated tag (cached) into
``clash_words``: its words that occur in some negative term, plus a ``@topic`` marker for each
topic it asks for. Building a negative prompt is then one set intersection per recipe.
"""
from __future__ import annotations

from .vocabulary import WORD

_GENERIC = ("lowres", "jpeg artifacts", "watermark", "signature", "text", "username", "error",
            "cropped", "worst quality", "low quality")

_BY_STYLE = {
    "photographic": ("cartoon", "anime", "illustration", "painting", "drawing", "sketch",
                     "3d render", "cgi", "plastic skin", "airbrushed", "oversaturated",
                     "overexposed", "underexposed", "out of focus", "blurry", "grainy",
                     "deformed", "disfigured"),
    "cinematic": ("cartoon", "anime", "illustration", "flat lighting", "amateur",
                  "snapshot", "overexposed", "washed out", "blurry", "deformed"),
    "anime": ("realistic", "photo", "photorealistic", "3d", "normal quality", "bad anatomy",
              "bad hands", "missing fingers", "extra digits", "fewer digits", "artist name",
              "blurry", "sketch", "monochrome", "greyscale"),
    "illustration": ("photo", "photorealistic", "3d render", "blurry", "muddy colors",
                     "messy lines", "amateur", "deformed"),
    "painting": ("photo", "photorealistic", "3d render", "cgi", "digital noise", "flat colors",
                 "blurry", "amateur", "deformed"),
    "watercolor": ("photo", "photorealistic", "3d render", "digital", "hard edges",
                   "oversaturated", "muddy colors", "blurry"),
    "sketch": ("color", "colorful", "photo", "photorealistic", "3d render", "painting",
               "messy", "smudged"),
    "comic": ("photo", "photorealistic", "3d render", "blurry", "muddy colors",
              "messy lines", "deformed"),
    "3d_render": ("photo", "2d", "flat", "sketch", "drawing", "painting", "low poly",
                  "bad topology", "noisy render", "blurry", "deformed"),
    "pixel_art": ("blurry", "anti aliasing", "smooth gradients", "photo", "photorealistic",
                  "3d render", "jpeg artifacts", "painting"),
    "concept_art": ("photo", "amateur", "blurry", "muddy", "flat lighting", "deformed"),
    "abstract": ("photo", "photorealistic", "figurative", "people", "face", "text", "blurry"),
    "unknown": ("blurry", "deformed", "disfigured", "bad composition", "amateur"),
}

_BY_CONTENT = {
    "portrait": ("bad anatomy", "deformed face", "asymmetrical eyes", "cross eyed",
                 "bad teeth", "extra limbs", "mutated hands", "poorly drawn face"),
    "character": ("bad anatomy", "bad hands", "extra fingers", "extra limbs", "missing limbs",
                  "mutated hands", "poorly drawn face", "long neck"),
    "group": ("bad anatomy", "merged bodies", "extra limbs", "duplicate faces", "bad hands"),
    "animal": ("bad anatomy", "extra legs", "missing legs", "deformed paws", "extra heads"),
    "landscape": ("people", "person", "oversaturated", "distorted horizon", "tilted horizon"),
    "cityscape": ("distorted perspective", "warped buildings", "tilted horizon"),
    "architecture": ("distorted perspective", "warped lines", "crooked walls", "people"),
    "interior": ("distorted perspective", "warped furniture", "cluttered", "people"),
    "vehicle": ("deformed wheels", "asymmetrical", "distorted perspective", "melted"),
    "food": ("unappetizing", "rotten", "burnt", "messy plate", "plastic look"),
    "product": ("cluttered background", "distorted", "misshapen", "dust", "scratches"),
    "scene": ("bad anatomy", "extra limbs", "duplicate", "cluttered"),
    "abstract": (),
    "unknown": (),
}

# Pony-family quality scores: the low scores go negative when the positive uses the high ones.
_PONY_NEGATIVE = ("score_6", "score_5", "score_4")


# Words that say nothing about what is banned: "out of focus" must not drop for "portrait of".
_FUNCTION_WORDS = frozenset({"a", "an", "the", "of", "and", "with", "on", "in", "to"})

# Topics: what the positive may ask for (cue words, and cue phrases as word tuples) and the
# negative terms that would then contradict it although they share no word with the positive.
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "person": ((), ("people", "person", "figurative", "face")),   # cue: a person subject
    "text": (("text", "lettering", "typography", "typographic", "typeface", "font", "calligraphy",
              "logo", "logotype", "wordmark", "caption", "title", "headline", "slogan", "letters",
              "signage", "sign", "label", "says", "saying", "written", "inscription", "quote",
              "words", "infographic", "meme", "comic strip", "speech bubble"),
             ("text",)),
    "blur": (("blur", "blurry", "blurred", "blurring", "bokeh", "defocused", "defocus", "unfocused",
              "dof", "depth of field", "soft focus", "out of focus", "tilt shift", "long exposure"),
             ("blurry", "out of focus")),
    "grain": (("grain", "grainy", "noise", "noisy", "film grain", "analog", "35mm film"),
              ("grainy", "digital noise", "noisy render")),
    "monochrome": (("monochrome", "monochromatic", "grayscale", "greyscale", "black and white",
                    "b w", "bw", "noir", "sepia", "duotone", "desaturated"),
                   ("monochrome", "grayscale", "greyscale", "color", "colorful")),
    "color": (("color", "colour", "colors", "colours", "colored", "coloured", "colorful",
               "colourful", "vibrant", "watercolor", "pastel", "crayon", "rainbow"),
              ("color", "colorful")),
    "cartoon": (("anime", "manga", "cartoon", "cartoonish", "toon", "chibi", "cel shading",
                 "cel shaded", "pixar", "disney", "ghibli"),
                ("cartoon", "anime")),
    "photo": (("photo", "photograph", "photography", "photographic", "photorealistic",
               "photorealism", "photoreal", "hyperrealistic", "hyperrealism", "realistic",
               "realism", "lifelike", "dslr"),
              ("photo", "photorealistic", "realistic")),
    "render": (("3d", "cgi", "render", "rendered", "octane", "blender", "unreal engine", "c4d",
                "cinema4d", "ray tracing", "raytracing", "vray", "redshift"),
               ("3d render", "cgi", "3d")),
    "clutter": (("cluttered", "clutter", "messy", "busy", "maximalist", "maximalism", "crowded",
                 "chaotic"),
                ("cluttered", "cluttered background", "messy", "messy plate", "messy lines")),
    "duplicate": (("twins", "twin", "clones", "clone", "duplicate", "multiple views",
                   "character sheet", "reference sheet", "turnaround", "model sheet"),
                  ("duplicate", "duplicate faces")),
    "saturation": (("saturated", "hypersaturated", "oversaturated", "high saturation"),
                   ("oversaturated",)),
    "tilt": (("dutch angle", "tilted", "canted", "tilted frame"), ("tilted horizon",)),
    "distortion": (("fisheye", "distorted", "distortion", "warped", "surreal", "melting"),
                   ("distorted perspective", "distorted horizon", "warped lines",
                    "warped buildings", "warped furniture", "distorted", "melted")),
}


def _terms(names) -> tuple[tuple[str, frozenset[str]], ...]:
    """(term, its clash words): the term's own words, and a marker per topic it belongs to."""
    out = []
    for name in names:
        words = {word for word in WORD.findall(name.lower()) if word not in _FUNCTION_WORDS}
        words.update("@" + topic for topic, (_cues, terms) in TOPICS.items() if name in terms)
        out.append((name, frozenset(words)))
    return tuple(out)


_STYLE_TERMS = {style: _terms(names) for style, names in _BY_STYLE.items()}
_CONTENT_TERMS = {content: _terms(names) for content, names in _BY_CONTENT.items()}
_GENERIC_TERMS = _terms(_GENERIC)
# Always added when a Pony positive is seen: "score_6_up" positive and "score_6" negative is the
# published Pony recipe, so the word overlap rule does not apply to them.
_PONY_TERMS = tuple((name, frozenset()) for name in _PONY_NEGATIVE)

# Every word some negative term can clash on ("score" and "9" tell a Pony prompt).
_TERM_WORDS = frozenset(word for table in (*_STYLE_TERMS.values(), *_CONTENT_TERMS.values(),
                                           _GENERIC_TERMS)
                        for _name, words in table for word in words if word[0] != "@") | {"score", "9"}
# Cue word -> topic markers, and cue phrases (word tuples) by their first word.
_CUE_WORDS: dict[str, set[str]] = {}
_CUE_PHRASES: dict[str, list[tuple[tuple[str, ...], str]]] = {}
for _topic, (_cues, _banned) in TOPICS.items():
    for _cue in _cues:
        _words = tuple(WORD.findall(_cue))
        if len(_words) == 1:
            _CUE_WORDS.setdefault(_words[0], set()).add("@" + _topic)
        else:
            _CUE_PHRASES.setdefault(_words[0], []).append((_words, "@" + _topic))
PERSON_CLASH = "@person"


def clash_words(words: tuple[str, ...] | list[str], person: bool = False) -> frozenset[str]:
    """What one comma-separated tag of the positive (its words) can clash on: the words that
    occur in some negative term and a ``@topic`` marker per topic it asks for (``person``: the
    tag names a person subject)."""
    found = set(_TERM_WORDS.intersection(words))
    if person:
        found.add(PERSON_CLASH)
    for index, word in enumerate(words):
        topics = _CUE_WORDS.get(word)
        if topics:
            found.update(topics)
        for phrase, topic in _CUE_PHRASES.get(word, ()):
            if tuple(words[index:index + len(phrase)]) == phrase:
                found.add(topic)
    return frozenset(found)


def _groups(style: str, content_type: str, pony: bool) -> list:
    groups = [_STYLE_TERMS.get(style, _STYLE_TERMS["unknown"]),
              _CONTENT_TERMS.get(content_type, ()), _GENERIC_TERMS]
    return [_PONY_TERMS, *groups] if pony else groups


class _Recipe:
    """The negative prompt of one (style, content, pony) with the index to drop terms fast."""

    def __init__(self, groups):
        self.terms: list[str] = []
        self.by_word: dict[str, set[str]] = {}
        for group in groups:
            for name, words in group:
                if name not in self.terms:
                    self.terms.append(name)
                    for word in words:
                        self.by_word.setdefault(word, set()).add(name)
        self.full = ", ".join(self.terms)
        self.words = frozenset(self.by_word)
        self.built: dict[frozenset[str], str] = {}   # clashing words -> prompt, recent ones

    def build(self, positive_words: set[str]) -> str:
        clash = self.words.intersection(positive_words)
        if not clash:
            return self.full
        built = self.built.get(clash)
        if built is None:
            dropped = set().union(*(self.by_word[word] for word in clash))
            built = ", ".join([term for term in self.terms if term not in dropped])
            if len(self.built) >= 4096:
                self.built.clear()
            self.built[clash] = built
        return built


_RECIPES = {(style, content, pony): _Recipe(_groups(style, content, pony))
            for style in _STYLE_TERMS for content in _CONTENT_TERMS for pony in (False, True)}


def negative_prompt(style: str, content_type: str, positive_words: set[str]) -> str:
    """Comma-separated negative prompt for ``style`` and ``content_type``.

    ``positive_words`` are what the positive prompt can clash on: its words (lower case,
    ``[a-z0-9]+``), or only those of them in clash_words(), plus clash_words()' topic markers.
    """
    pony = "score" in positive_words and "9" in positive_words
    recipe = _RECIPES.get((style, content_type, pony))
    if recipe is None:
        recipe = _RECIPES[("unknown" if style not in _STYLE_TERMS else style, "unknown", pony)]
    return recipe.build(positive_words)
