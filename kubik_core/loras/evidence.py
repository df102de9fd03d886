"""How strongly a prompt asks for each LoRA of the library: the evidence the recommender's bar
is calibrated on (0 = nothing asks for it, 1 = the prompt names it).

Evidence a knowledgeable user would act on, strongest first:

* NAMED (1.0): the prompt contains one of the LoRA's names ("made of glass", "captain ilsa
  korr"; any order for names with a proper noun, titles such as "captain" optional) or one of
  its trigger words ("nyxvalk", "double exposure").
* NAME_WORDS (0.9): every word of its name, in any order ("film grain ... photo" for "Film
  Grain Photo"), or every word of its name that is not an ordinary prompt word ("ghibli" of
  "Studio Ghibli"); a generic one-word character name with its series ("link" + "zelda").
* ONE_WORD (0.75): its whole name or trigger is one ordinary word ("cyborg", "kimono"), or the
  prompt holds most of its name in order ("golden hour" of "Golden Hour Light").
* PARTIAL (up to 0.7): part of a longer name, weighted by how rare the words are in the library.
* DETAIL (0.6): the prompt asks for fine detail, and the LoRA is a detail tool that adds it.
* MEDIUM_LORA (0.6): the prompt names the medium of a style LoRA named only by its medium
  ("oil painting" for "Painterly XL").
* MEDIUM (0.4): the prompt names the medium of a style LoRA with a look of its own
  ("watercolor" for "Botanical Watercolor", "photo" for "Polaroid", "anime" for a studio's style).
* TAG (0.35): one of its own tags (not a category, a medium or booru noise such as "1girl").

Words are matched as whole words within one comma-separated part of the prompt. The lexical
items (name, trigger, partial name, tag) count by their maximum, since they mostly share the
same prompt words ("glass" is a tag and part of the name "made of glass": one word, counted
once); the lexical maximum and the category item (detail or medium) combine as independent
evidence: 1 - (1 - lexical)(1 - category). LoRAs ``named_strictly`` (characters, real people,
unknown LoRAs whose name is a name) take only NAMED and NAME_WORDS, from their names and from
the triggers that name them (profile.naming_triggers): "silver hair, winged helmet" or
"captain" never call a character.

Everything that does not depend on the prompt is built once per library into numpy arrays and
dicts keyed by phrase, so a prompt costs one dict lookup per n-gram and a few vector operations.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .lexicon import (DETAIL_CUES, KIND_TAGS, LABEL_WORDS, MEDIA_CORE, TITLE_WORDS, UNNAMING_TAGS,
                      medium_of_phrase)
from .profile import LoraProfile, is_distinctive, naming_triggers
from .text_index import BM25Index, tokens

NAMED, NAME_WORDS, ONE_WORD, PARTIAL, DETAIL, MEDIUM_LORA, MEDIUM, TAG = 1.0, 0.9, 0.75, 0.7, 0.6, 0.6, 0.4, 0.35
MAX_PHRASE_WORDS = 12            # longer trigger phrases are sentences, not names
_SEGMENTS = re.compile(r"[,.;\n|]+")
_CATEGORY_TAGS = frozenset(t for phrases in KIND_TAGS.values() for t in phrases)


@dataclass
class Item:
    """One piece of evidence, for the reasons."""

    strength: float
    what: str        # "name", "trigger", "tag", "medium", "detail"
    text: str


@dataclass
class PromptEvidence:
    """The evidence of every LoRA for one prompt, and what the prompt named."""

    total: np.ndarray                # combined evidence per LoRA
    lexical: np.ndarray              # names, triggers and partial names (max)
    media: list[str]                 # media the prompt names, first named first
    detail_cue: str                  # the prompt's detail phrase ("" if none)
    _phrases: set[str] = field(default_factory=set)          # phrases of the table found in the prompt
    _required: set[int] = field(default_factory=set)         # word sets the prompt holds
    _coverage: np.ndarray | None = None
    _owner: "EvidenceIndex | None" = None

    def items(self, i: int) -> list[Item]:
        """What the prompt says for LoRA ``i``, strongest first."""
        index = self._owner
        found: list[Item] = []
        for phrase, strength, source in index.own_phrases[i]:
            if phrase in self._phrases:
                found.append(Item(strength, _SOURCES[source], phrase))
        for r in index.own_requirements[i]:
            if r in self._required:
                found.append(Item(float(index.req_strength[r]), "name", index.req_text[r]))
        if self._coverage is not None:
            for p in index.own_coverage[i]:
                if self._coverage[p] <= 0:
                    continue
                whole = self._coverage[p] >= 1.0 - 1e-9
                found.append(Item(NAME_WORDS if whole else round(PARTIAL * float(self._coverage[p]), 3),
                                  "name" if whole else "part of its name", index.cov_text[p]))
        profile = index.profiles[i]
        if profile.kind == "style" and profile.medium in self.media:
            found.append(Item(MEDIUM_LORA if profile.medium_only else MEDIUM, "medium", profile.medium))
        if profile.adds_detail and self.detail_cue:
            found.append(Item(DETAIL, "detail", self.detail_cue))
        best: dict[tuple[str, str], Item] = {}
        for item in found:
            key = (item.what, item.text)
            if key not in best or item.strength > best[key].strength:
                best[key] = item
        return sorted(best.values(), key=lambda it: (-it.strength, _ITEM_ORDER.index(it.what), it.text))


_SOURCES = ("name", "trigger", "tag")
_ITEM_ORDER = ("trigger", "name", "part of its name", "tag", "medium", "detail")


class EvidenceIndex:
    """The prompt-independent part: phrases, required word sets and name coverage per LoRA."""

    def __init__(self, triggers: list[list[str]], profiles: list[LoraProfile], tags: list[list[str]],
                 bm25: BM25Index):
        self.size = len(profiles)
        self.profiles = profiles
        phrases: dict[str, list[tuple[int, float, int]]] = {}
        req_words: list[frozenset[str]] = []
        req_owner, req_strength, req_text = [], [], []
        cov_owner, cov_words, cov_text = [], [], []

        own: list[list[tuple[str, float, int]]] = [[] for _ in profiles]

        def phrase(text_words: tuple[str, ...] | list[str], i: int, strength: float, source: int) -> None:
            if 0 < len(text_words) <= MAX_PHRASE_WORDS:
                text = " ".join(text_words)
                phrases.setdefault(text, []).append((i, strength, source))
                own[i].append((text, strength, source))

        def require(words: set[str], i: int, strength: float, text: str) -> None:
            req_words.append(frozenset(words))
            req_owner.append(i)
            req_strength.append(strength)
            req_text.append(text)

        for i, profile in enumerate(profiles):
            strict = profile.named_strictly
            medium_words = ({w for p in MEDIA_CORE[profile.medium] for w in p.split()}
                            if profile.kind == "style" and profile.medium else set())
            for name in profile.names:
                text = " ".join(name)
                if strict:
                    core = [w for w in name if w not in TITLE_WORDS] or list(name)
                    if any(is_distinctive(w) for w in core):
                        require(set(core), i, NAMED, text)
                    elif len(core) > 1:
                        phrase(core, i, NAMED, 0)
                    else:
                        for qualifier in profile.qualifiers:
                            if is_distinctive(qualifier):
                                require({core[0], qualifier}, i, NAME_WORDS, f"{text} ({qualifier})")
                    continue
                one_generic = len(name) == 1 and not is_distinctive(name[0])
                phrase(name, i, ONE_WORD if one_generic else NAMED, 0)
                for size in range(max(2, (len(name) + 1) // 2), len(name)):
                    for start in range(len(name) - size + 1):
                        phrase(name[start:start + size], i, ONE_WORD, 0)
                distinct = {w for w in name if is_distinctive(w)}
                if distinct and len(distinct) < len(set(name)):
                    require(distinct, i, NAME_WORDS, text)
                # Coverage weighs what the name shows, not its label words ("castle detail" shows a
                # castle). A style's own medium words count only along with another of its words:
                # alone they are the medium evidence ("gouache painting" is not found by "painting").
                shown = tuple(dict.fromkeys(w for w in name if w not in LABEL_WORDS))
                counted = tuple(w for w in shown if w not in medium_words)
                if len(name) > 1 and counted:
                    cov_owner.append(i)
                    cov_words.append((shown, counted))
                    cov_text.append(text)
            if strict:
                for key in naming_triggers(triggers[i], profile.names, profile.qualifiers):
                    phrase(key.split(), i, NAMED, 1)
            else:
                for trigger in triggers[i]:
                    for part in trigger.split(","):
                        words = tokens(part)
                        if words and " ".join(words) not in UNNAMING_TAGS:
                            one_generic = len(words) == 1 and not is_distinctive(words[0])
                            phrase(words, i, ONE_WORD if one_generic else NAMED, 1)
            if not strict:
                for tag in tags[i]:
                    words = tokens(tag)
                    key = " ".join(words)
                    if words and key not in _CATEGORY_TAGS and key not in UNNAMING_TAGS \
                            and not medium_of_phrase(key):
                        phrase(words, i, TAG, 2)

        self.own_phrases = own           # per LoRA: (phrase, strength, source), for the reasons
        self.own_requirements: list[list[int]] = [[] for _ in profiles]
        for r, owner in enumerate(req_owner):
            self.own_requirements[owner].append(r)
        self.own_coverage: list[list[int]] = [[] for _ in profiles]
        for c, owner in enumerate(cov_owner):
            self.own_coverage[owner].append(c)
        self.phrases = {}
        for text, hits in phrases.items():
            ids = np.fromiter((h[0] for h in hits), dtype=np.int64, count=len(hits))
            strengths = np.fromiter((h[1] for h in hits), dtype=np.float64, count=len(hits))
            sources = np.fromiter((h[2] for h in hits), dtype=np.int8, count=len(hits))
            self.phrases[text] = (ids, strengths, sources)
        self.max_words = max((len(t.split()) for t in self.phrases), default=1)

        # Required word sets: postings word -> requirement ids.
        self.req_owner = np.array(req_owner, dtype=np.int64)
        self.req_strength = np.array(req_strength, dtype=np.float64)
        self.req_size = np.array([len(w) for w in req_words], dtype=np.int64)
        self.req_text = req_text
        postings: dict[str, list[int]] = {}
        for r, words in enumerate(req_words):
            for word in words:
                postings.setdefault(word, []).append(r)
        self.req_postings = {w: np.array(ids, dtype=np.int64) for w, ids in postings.items()}

        # Name coverage: each name's words weighted by rarity in the library (BM25 idf).
        self.cov_owner = np.array(cov_owner, dtype=np.int64)
        self.cov_text = cov_text
        weights: dict[str, list[tuple[int, float]]] = {}
        totals = np.zeros(len(cov_words))
        gates: dict[str, list[int]] = {}
        for p, (shown, counted) in enumerate(cov_words):
            for word in shown:
                weight = _idf(bm25, word)
                totals[p] += weight
                weights.setdefault(word, []).append((p, weight))
            for word in counted:
                gates.setdefault(word, []).append(p)
        self.cov_gates = {w: np.array(ps, dtype=np.int64) for w, ps in gates.items()}
        self.cov_postings = {w: (np.array([p for p, _ in ps], dtype=np.int64),
                                 np.array([x for _, x in ps])) for w, ps in weights.items()}
        self.cov_total = np.where(totals > 0, totals, 1.0)

        self.medium_of = [p.medium if p.kind == "style" else "" for p in profiles]
        self.style_medium = np.array(self.medium_of, dtype=object)
        self.detail_mask = np.array([p.adds_detail for p in profiles], dtype=bool)
        self.medium_only = np.array([p.medium_only for p in profiles], dtype=bool)
        self.strict = np.array([p.named_strictly for p in profiles], dtype=bool)
        media = sorted({m for m in self.medium_of if m})
        self.medium_ids = {m: np.array([i for i, x in enumerate(self.medium_of) if x == m], dtype=np.int64)
                           for m in media}

    def match(self, prompt: str) -> PromptEvidence:
        lexical = np.zeros(self.size)
        category = np.zeros(self.size)
        matched: set[str] = set()
        present: set[str] = set()
        media: list[str] = []
        detail_cue = ""
        for segment in _SEGMENTS.split(prompt.lower()):
            words = tokens(segment)
            present.update(words)
            for start in range(len(words)):
                for size in range(1, min(self.max_words, len(words) - start) + 1):
                    text = " ".join(words[start:start + size])
                    hit = self.phrases.get(text)
                    if hit is not None and text not in matched:
                        matched.add(text)
                        np.maximum.at(lexical, hit[0], hit[1])
                    medium = medium_of_phrase(text)
                    if medium and medium not in media:
                        media.append(medium)
                    if not detail_cue and text in DETAIL_CUES:
                        detail_cue = text
        required: set[int] = set()
        if len(self.req_owner):
            counts = np.zeros(len(self.req_owner), dtype=np.int64)
            for word in present:
                ids = self.req_postings.get(word)
                if ids is not None:
                    counts[ids] += 1
            satisfied = np.flatnonzero(counts == self.req_size)
            np.maximum.at(lexical, self.req_owner[satisfied], self.req_strength[satisfied])
            required = set(satisfied.tolist())
        coverage = None
        if len(self.cov_owner):
            covered = np.zeros(len(self.cov_owner))
            opened = np.zeros(len(self.cov_owner), dtype=bool)
            for word in present:
                hit = self.cov_postings.get(word)
                if hit is not None:
                    covered[hit[0]] += hit[1]
                gate = self.cov_gates.get(word)
                if gate is not None:
                    opened[gate] = True
            coverage = np.where(opened, covered / self.cov_total, 0.0)
            partial = np.where(coverage < 1.0 - 1e-9, PARTIAL * coverage, NAME_WORDS)
            np.maximum.at(lexical, self.cov_owner, partial)
        for medium in media:
            ids = self.medium_ids.get(medium)
            if ids is not None:
                category[ids] = np.where(self.medium_only[ids], MEDIUM_LORA, MEDIUM)
        if detail_cue:
            category[self.detail_mask] = np.maximum(category[self.detail_mask], DETAIL)
        total = 1.0 - (1.0 - lexical) * (1.0 - category)
        total[self.strict] = lexical[self.strict]
        return PromptEvidence(total=total, lexical=lexical, media=media, detail_cue=detail_cue,
                              _phrases=matched, _required=required, _coverage=coverage, _owner=self)


def _idf(bm25: BM25Index, word: str) -> float:
    hit = bm25.postings.get(word)
    df = len(hit[0]) if hit is not None else 0
    return math.log(1 + (bm25.size - df + 0.5) / (df + 0.5))

