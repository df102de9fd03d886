"""The curated prompt vocabulary (data/vocabulary.json) as one phrase index built at import.

Every phrase is normalised the way prompts are read (lower case, words of ``[a-z0-9]``, so
``score_9``, ``close-up`` and ``Close Up`` all read as the same words) and stored once with
everything it says: concept categories, subject or setting kind, style and content cues.
Lookup is a dict access per candidate n-gram, longest phrase first.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

from .analysis import CONCEPT_CATEGORIES

WORD = re.compile(r"[a-z0-9]+")

# Subject and setting kinds vote for a content type (kind: (content type, strength)).
KIND_CONTENT = {
    "person": ("character", 2.0), "character": ("character", 2.0),
    "creature": ("character", 1.5), "animal": ("animal", 2.0), "vehicle": ("vehicle", 2.0),
    "food": ("food", 2.0), "object": ("product", 0.7), "plant": ("landscape", 0.3),
    "building": ("architecture", 1.5), "nature": ("landscape", 1.0),
    "urban": ("cityscape", 1.0), "interior": ("interior", 1.2), "fantastical": ("scene", 0.8),
}

# Subject kinds that are figures (people, booru "1girl", knights, superheroes...): a figure in a
# setting makes a scene or a character picture, never a landscape, and rules out "people" in the
# negative. Words of these kinds listed in the data's "figure_modifiers" are no figures: they are
# mostly adjectives ("alien planet", "giant tree").
FIGURE_KINDS = frozenset({"person", "character"})

_DATA = Path(__file__).with_name("data") / "vocabulary.json"
_CATEGORY_INDEX = {name: index for index, name in enumerate(CONCEPT_CATEGORIES)}


@dataclass(eq=False, slots=True)
class Entry:
    """What one phrase tells the analyzer."""

    phrase: str                                           # as first written in the data
    categories: list[str] = field(default_factory=list)   # concept categories, report order
    kind: str = ""                                        # subject or setting kind
    styles: dict[str, float] = field(default_factory=dict)
    contents: dict[str, float] = field(default_factory=dict)
    composition: bool = False
    focus: bool = False          # frames or addresses a figure: "looking at viewer", "solo", "upper body"
    figure: bool = False         # names a figure subject (FIGURE_KINDS, less the modifiers)
    style_votes: tuple = ()      # (style, strength) pairs, filled by Vocabulary.finish
    content_votes: tuple = ()    # (content type, strength) pairs, kind vote included


class TagReading(NamedTuple):
    """Everything one comma-separated tag contributes, summed over its phrases.

    ``concepts`` holds (category index in CONCEPT_CATEGORIES, phrases) pairs; ``style_votes``
    and ``content_votes`` are (name, strength) pairs with each phrase counted once per tag.
    """

    word_count: int
    words: tuple[str, ...]
    entries: tuple[Entry, ...]
    concepts: tuple[tuple[int, tuple[str, ...]], ...]
    style_votes: tuple[tuple[str, float], ...]
    content_votes: tuple[tuple[str, float], ...]
    composition: int
    figure: bool = False   # a phrase names a figure subject (FIGURE_KINDS)
    focus: bool = False    # a phrase puts a figure in focus (data "subject_focus")


def normalise(phrase: str) -> str:
    return " ".join(WORD.findall(phrase.lower()))


class Vocabulary:
    """Phrase index: ``entries[normalised phrase]``, and ``prefixes``, the word sequences that
    begin a longer phrase."""

    # Tags read recently (lower-cased text -> TagReading); cleared when it reaches the limit.
    TAG_CACHE_LIMIT = 50_000

    def __init__(self, data: dict):
        self.entries: dict[str, Entry] = {}
        self.prefixes: set[str] = set()
        self.tag_cache: dict[str, TagReading] = {}
        for category in CONCEPT_CATEGORIES:
            groups = data[category]
            if isinstance(groups, list):
                groups = {"": groups}
            for kind, phrases in groups.items():
                for phrase in phrases:
                    entry = self._entry(phrase)
                    if category not in entry.categories:
                        entry.categories.append(category)
                    if kind and not entry.kind:
                        entry.kind = kind
        for style, cues in data["style_cues"].items():
            for phrase, strength in cues.items():
                self._entry(phrase).styles[style] = float(strength)
        for content, cues in data["content_cues"].items():
            for phrase, strength in cues.items():
                self._entry(phrase).contents[content] = float(strength)
        for phrase in data["composition_words"]:
            self._entry(phrase).composition = True
        modifiers = {normalise(phrase) for phrase in data["figure_modifiers"]}
        for key, entry in self.entries.items():
            entry.figure = entry.kind in FIGURE_KINDS and key not in modifiers
        for phrase in data["subject_focus"]:
            entry = self.entries.get(normalise(phrase))
            if entry is None:  # focus only qualifies phrases that already say something
                raise ValueError(f"subject_focus phrase {phrase!r} is not in the vocabulary")
            entry.focus = True
        for entry in self.entries.values():
            entry.categories.sort(key=_CATEGORY_INDEX.__getitem__)
        self.finish()

    def _entry(self, phrase: str) -> Entry:
        key = normalise(phrase)
        if not key:
            raise ValueError(f"vocabulary phrase {phrase!r} has no words")
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(phrase.strip())
            words = key.split(" ")
            for length in range(1, len(words)):
                self.prefixes.add(" ".join(words[:length]))
        return entry

    def match(self, words: list[str]) -> list[Entry]:
        """The phrases found in ``words``, longest match first, in text order.

        A phrase is extended word by word only while the words so far begin some longer
        phrase, so most words cost one or two dict lookups.
        """
        entries, prefixes = self.entries, self.prefixes
        count = len(words)
        found_all: list[Entry] = []
        index = 0
        while index < count:
            word = words[index]
            best = entries.get(word)
            step = 1
            if word in prefixes:
                key, end = word, index + 1
                while end < count:
                    key = key + " " + words[end]
                    end += 1
                    found = entries.get(key)
                    if found is not None:
                        best, step = found, end - index
                    if key not in prefixes:
                        break
            elif best is None and word[-1] == "s" and len(word) > 3:  # plural of a one-word phrase
                best = entries.get(word[:-1])
            if best is not None:
                found_all.append(best)
            index += step
        return found_all

    def read_tag(self, tag: str) -> TagReading:
        """The reading of one lower-cased comma-separated tag (phrases never span a comma).

        Tags recur across prompts ("masterpiece", "8k", "studio lighting"), so readings are
        cached: a recurring tag costs one dict lookup.
        """
        reading = self.tag_cache.get(tag)
        if reading is not None:
            return reading
        words = WORD.findall(tag)
        entries = tuple(dict.fromkeys(self.match(words)))
        by_category: dict[int, list[str]] = {}
        styles: dict[str, float] = {}
        contents: dict[str, float] = {}
        for entry in entries:
            for category in entry.categories:
                by_category.setdefault(_CATEGORY_INDEX[category], []).append(entry.phrase)
            for name, strength in entry.style_votes:
                styles[name] = styles.get(name, 0.0) + strength
            for name, strength in entry.content_votes:
                contents[name] = contents.get(name, 0.0) + strength
        reading = TagReading(
            len(words), tuple(words), entries,
            tuple((index, tuple(phrases)) for index, phrases in by_category.items()),
            tuple(styles.items()), tuple(contents.items()),
            sum(entry.composition for entry in entries),
            any(entry.figure for entry in entries),
            any(entry.focus for entry in entries))
        if len(self.tag_cache) >= self.TAG_CACHE_LIMIT:
            self.tag_cache.clear()
        self.tag_cache[tag] = reading
        return reading

    def finish(self) -> None:
        """Freeze each entry's votes into tuples (the analyzer's inner loop reads only these)."""
        for entry in self.entries.values():
            contents = dict(entry.contents)
            if entry.kind:
                content, vote = KIND_CONTENT[entry.kind]
                contents[content] = contents.get(content, 0.0) + vote
            entry.style_votes = tuple(entry.styles.items())
            entry.content_votes = tuple(contents.items())
            entry.categories = tuple(entry.categories)


VOCABULARY = Vocabulary(json.loads(_DATA.read_text(encoding="utf-8")))
