"""Negative prompts suited to a style and content type, without fighting the positive prompt.

A negative prompt is assembled from term lists (style first, then content, then generic
defects). A term is left out when any of its words appears in the positive prompt: a prompt
asking for "blurry background" gets no "blurry", an anime prompt asking for "3d" gets no "3d".
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
              "blurry", "sketch"),
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


def _terms(names) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((name, frozenset(WORD.findall(name.lower()))) for name in names)


_STYLE_TERMS = {style: _terms(names) for style, names in _BY_STYLE.items()}
_CONTENT_TERMS = {content: _terms(names) for content, names in _BY_CONTENT.items()}
_GENERIC_TERMS = _terms(_GENERIC)
# Always added when a Pony positive is seen: "score_6_up" positive and "score_6" negative is the
# published Pony recipe, so the word overlap rule does not apply to them.
_PONY_TERMS = tuple((name, frozenset()) for name in _PONY_NEGATIVE)


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

    ``positive_words`` are the positive prompt's words (lower case, ``[a-z0-9]+``).
    """
    pony = "score" in positive_words and "9" in positive_words
    recipe = _RECIPES.get((style, content_type, pony))
    if recipe is None:
        recipe = _RECIPES[("unknown" if style not in _STYLE_TERMS else style, "unknown", pony)]
    return recipe.build(positive_words)
