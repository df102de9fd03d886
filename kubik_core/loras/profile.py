"""What a LoRA is, read from its metadata: its kind, its medium (style LoRAs) and its names.

A knowledgeable user knows that "Nyx the Valkyrie (OC)" is a character (used only when the
prompt asks for Nyx), that "Botanical Watercolor" is a watercolor style (which clashes with an
ink style), that "Detail Slider XL" is a tool. The evidence, strongest first:

1. CivitAI's "person of interest" flag (a real person's likeness).
2. The model's category tags (CivitAI / Lora-Manager tags, ``modelspec.tags``): "style",
   "character", "celebrity", "clothing", "poses", "tool"...
3. Its names (CivitAI model name, ModelSpec title, kohya output name, file name): "... Style",
   "... Outfit", "... Slider", "(OC)", a medium ("Charcoal Sketch"), few-step names
   ("Hyper-SDXL-8steps", "lcm-lora").
4. Its descriptions (model description, version description, ModelSpec description, A1111
   description): "character LoRA", "likeness of", "a slider".
5. Its trigger words: a made-up name followed by appearance words ("nyxvalk, silver hair") is
   how character LoRAs are triggered; kohya's DreamBooth class tokens ("ohwx woman") name a
   person.
6. Only when nothing above says anything: its training tags (booru noise such as "1girl"
   removed): a medium among them makes it a style; otherwise it counts as a concept.

A character or person LoRA must have an identity: a name or trigger with a word that is not an
ordinary prompt word. One that has none ("Character Turnaround Sheet") is not about anyone, and
takes its next best kind. Characters, people, and LoRAs nothing describes whose name is a name
(it may be anyone) are ``named_strictly``: the prompt must name them (evidence.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .entry import LoraEntry
from .lexicon import (APPEARANCE_WORDS, GENERIC_WORDS, IDENTITY_KINDS, KIND_DESCRIPTIONS,
                      KIND_NAME_WORDS, KIND_TAGS, LABEL_WORDS, MAX_MEDIUM_WORDS, MEDIA_CORE, MEDIUM_FILLERS,
                      NAME_NOISE, TITLE_WORDS, UNNAMING_TAGS, medium_of_phrase)
from .text_index import tokens

# Votes per source (a kind is counted once per source).
POI_VOTE, TAG_VOTE, NAME_VOTE, MEDIUM_NAME_VOTE, DESCRIPTION_VOTE, TRIGGER_VOTE, CLASS_TOKEN_VOTE = (
    6.0, 3.0, 2.0, 1.5, 1.5, 1.5, 3.0)
TRAINING_TAG_VOTE = TITLE_VOTE = 1.0
# On a tie the kind that asks the prompt for less wins; identity kinds (picked only when named)
# come last, so a tie never makes a concept into a character.
TIE_ORDER = ("style", "clothing", "pose", "concept", "detail", "character", "person")
_BRACKETS = re.compile(r"\(([^)]*)\)|\[([^\]]*)\]|\{([^}]*)\}")
_SEPARATORS = re.compile(r"\s[-|:\u2013\u2014]\s|\|")
_HTML = re.compile(r"<[^>]*>")
_EPITHET = re.compile(r"^\s*([^\s_]+)[\s_]+the[\s_]+\S")
# Word starts inside file names like "ClayAnimationXL" (not inside "LoRA").
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z][a-z]|(?:XL|SDXL|PDXL)(?![a-z]))")
_GLUED_VERSION = re.compile(r"^([a-z]{3,})v\d+$")
_VERSION = re.compile(r"^(v\d+|e\d+|\d+|\d+step|\d+steps|fp\d+|bf\d+)$")
_SPEED_UNAMBIGUOUS = re.compile(r"(?<![a-z])(lcm|tcd|dmd2|pcm|hyper[-_ ]?(sd|sdxl|flux)|turbo[-_ ]?alpha)(?![a-z])")
_SPEED_WORD = re.compile(r"(?<![a-z])(lightning|turbo|hyper|flash)(?![a-z])")
_STEP_COUNT = re.compile(r"(?<![a-z0-9])\d{1,2}[-_ ]?steps?(?![a-z])")
_DREAMBOOTH_CLASSES = frozenset({"woman", "man", "person", "girl", "boy", "lady", "guy", "face"})


@dataclass(frozen=True)
class LoraProfile:
    kind: str                          # lexicon.KINDS
    kind_reason: str                   # for explanations: "its tags say 'character'"
    medium: str = ""                   # style LoRAs: a lexicon.MEDIA key, or "" (a mood for any medium)
    names: tuple[tuple[str, ...], ...] = ()     # name phrases as tokens (noise removed)
    qualifiers: frozenset[str] = frozenset()   # words of "(series)", "- subtitle" parts
    adds_detail: bool = False          # a general detail tool ("Detail Tweaker"; not "Age Slider")
    named_strictly: bool = False       # picked only when the prompt names it (characters, people,
                                       # and LoRAs nothing describes whose name is a name)
    medium_only: bool = False          # a style LoRA named only by its medium ("Oil Painting XL")


def profile_of(entry: LoraEntry) -> LoraProfile:
    """Kind, medium and names of one LoRA (see the module docstring for the order of evidence)."""
    info = entry.sidecar
    raw_names = _unique_texts([info.get("model_name", ""), entry.title, entry.stem])
    names, qualifiers = [], set()
    for raw in raw_names:
        alternatives, quals = split_name(raw)
        names += alternatives
        qualifiers |= quals
    names = list(dict.fromkeys(n for n in names if n))
    tags = [" ".join(tokens(t)) for t in list(info.get("tags", [])) + list(entry.spec_tags)]
    tags = [t for t in tags if t]
    descriptions = " ".join(_HTML.sub(" ", str(info.get(k, ""))) for k in ("model_description", "description"))
    descriptions += " " + entry.spec_description
    description_text = " " + " ".join(tokens(descriptions)) + " "
    triggers = [" ".join(tokens(t)) for t in entry.triggers]
    triggers = [t for t in triggers if t]
    name_tokens = {w for raw in raw_names for w in tokens(raw)}

    if _is_speed(raw_names):
        return LoraProfile("speed", "its name says it is a few-step (speed) LoRA", names=tuple(names),
                           qualifiers=frozenset(qualifiers))
    votes: dict[str, float] = {}
    reasons: dict[str, tuple[float, str]] = {}    # kind -> its strongest evidence

    def vote(kind: str, weight: float, reason: str) -> None:
        votes[kind] = votes.get(kind, 0.0) + weight
        if kind not in reasons or weight > reasons[kind][0]:
            reasons[kind] = (weight, reason)

    if info.get("poi"):
        vote("person", POI_VOTE, "CivitAI marks it as a real person")
    for kind, phrases in KIND_TAGS.items():
        hit = next((t for t in tags if t in phrases), None)
        if hit:
            vote(kind, TAG_VOTE, f"its tags say '{hit}'")
    for kind, phrases in KIND_NAME_WORDS.items():
        hit = next((p for p in phrases if _has_phrase(name_tokens, raw_names, p)), None)
        if hit:
            vote(kind, NAME_VOTE, f"its name says '{hit}'")
    if any(n[0] in TITLE_WORDS and len(n) > 1 and all(is_distinctive(w) for w in n[1:]) for n in names):
        vote("character", TITLE_VOTE, "its name is a title and a name")
    name_medium = _medium_votes([" ".join(n) for n in names] + [" ".join(tokens(r)) for r in raw_names])
    if name_medium:
        vote("style", MEDIUM_NAME_VOTE, f"its name names a medium ({next(iter(name_medium))})")
    for kind, phrases in KIND_DESCRIPTIONS.items():
        hit = next((p for p in phrases if f" {p} " in description_text), None)
        if hit:
            vote(kind, DESCRIPTION_VOTE, f"its description says '{hit}'")
    if _looks_like_character_triggers(triggers):
        vote("character", TRIGGER_VOTE, "its trigger words are a name and appearance words")
    if _dreambooth_person(entry):
        vote("person", CLASS_TOKEN_VOTE, "its DreamBooth class token names a person")
    training_medium = ""
    if not votes:
        training_medium = _training_tags_medium(entry)
        if training_medium:
            vote("style", TRAINING_TAG_VOTE, f"its training tags name a medium ({training_medium})")

    ranked = sorted(votes, key=lambda k: (-votes[k], TIE_ORDER.index(k) if k in TIE_ORDER else 99))
    identity = _has_identity(names, triggers)
    kind = next((k for k in ranked if k not in IDENTITY_KINDS or identity), "concept")
    reason = reasons[kind][1] if kind in reasons else "nothing says what it is"
    # Nothing says what it is, and its name is a name (words that are not prompt words): it may
    # be anyone, so it is picked only as a character would be, when the prompt names it.
    strict = kind in IDENTITY_KINDS or (not votes and any(looks_like_a_name(n) for n in names))
    medium = ""
    if kind == "style":
        medium = _style_medium(name_medium, triggers, tags, description_text) or training_medium
    general_tool = any(all(w in LABEL_WORDS for w in n) for n in names)
    return LoraProfile(kind, reason, medium, tuple(names), frozenset(qualifiers),
                       adds_detail=kind == "detail" and general_tool,
                       named_strictly=strict, medium_only=bool(medium) and any(
                           _named_by_medium_only(n, medium) for n in names))


def split_name(raw: str) -> tuple[list[tuple[str, ...]], set[str]]:
    """(name phrases, qualifier words) of one written name.

    "Samus Aran (Metroid) [Pony]" -> [("samu", "aran")], {"metroid"}; "Yor Forger / Thorn
    Princess" -> two names; "Geralt - The Witcher 3" -> [("geralt",)], {"witcher"}; "Nyx the
    Valkyrie" -> [("nyx", "valkyrie"), ("nyx",)];
    "ClayAnimationXL" -> [("clay", "animation")]. File-name noise (versions, base models, "lora",
    epoch numbers) and the kind labels are dropped.
    """
    qualifiers: set[str] = set()

    def keep(match: re.Match) -> str:
        qualifiers.update(_clean(tokens(next(g for g in match.groups() if g is not None))))
        return " , "

    text = _BRACKETS.sub(keep, _CAMEL.sub(" ", raw).lower())
    parts = [p for p in _SEPARATORS.split(text.replace(",", " , ")) if p.strip()]
    if not parts:
        return [], qualifiers
    for part in parts[1:]:
        qualifiers.update(_clean(tokens(part)))
    names = []
    for alternative in parts[0].split("/"):
        words = tuple(_clean(tokens(alternative)))
        if words:
            names.append(words)
        epithet = _EPITHET.match(alternative)     # "Gandalf the Grey" is also "Gandalf"
        if epithet and _clean(tokens(epithet.group(1))):
            names.append(tuple(_clean(tokens(epithet.group(1)))))
    return names, qualifiers


def _clean(words: list[str]) -> list[str]:
    out = []
    for word in words:
        glued = _GLUED_VERSION.match(word)
        if glued and glued.group(1) not in NAME_NOISE:
            word = glued.group(1)
        if word in NAME_NOISE or _VERSION.match(word):
            continue
        out.append(word)
    return out


_SUFFIXES = ("ing", "ed", "er", "y", "ly", "ish", "ful")


def _named_by_medium_only(name: tuple[str, ...], medium: str) -> bool:
    """Every word of ``name`` belongs to a core phrase of ``medium`` (or is "art")."""
    core_words = {w for p in MEDIA_CORE[medium] for w in p.split()}
    words = [w for w in name if w not in MEDIUM_FILLERS]
    return bool(words) and all(w in core_words for w in words)


def is_distinctive(word: str) -> bool:
    """A word that is not an ordinary prompt word: a name ("frieren"), a made-up trigger
    ("nyxvalk", "ohwx"). Ordinary: a generic word (lexicon.GENERIC_WORDS), one with a common
    ending added ("winged", "misty"), or two of them joined ("ponytail", "bodysuit")."""
    if word in GENERIC_WORDS or word.isdigit() or len(word) < 2:
        return False
    for suffix in _SUFFIXES:
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and (stem in GENERIC_WORDS or stem[:-1] in GENERIC_WORDS
                                                         and stem[-1] == stem[-2]):
            return False
    return not any(word[:k] in GENERIC_WORDS and word[k:] in GENERIC_WORDS for k in range(3, len(word) - 2))


def looks_like_a_name(name: tuple[str, ...]) -> bool:
    """At least half of its words are not ordinary words ("renna kitsune", "lora 3f9a2c"; not
    "double peace sign")."""
    return sum(1 for w in name if is_distinctive(w)) * 2 >= len(name) > 0


def naming_triggers(triggers: list[str], names: tuple[tuple[str, ...], ...],
                    qualifiers: frozenset[str]) -> list[str]:
    """The trigger phrases (normalised) that name a character rather than describe one.

    Character LoRAs are triggered by a name followed by appearance words ("nyxvalk, silver hair,
    winged helmet"); only the name calls the character. A phrase names it when it shares a word
    with the LoRA's names or series ("samus aran", "link (zelda)"), or when it is the first
    phrase of the trigger words and holds a word that is not an ordinary word ("nyxvalk",
    "ohwx woman").
    """
    known = {w for n in names for w in n if is_distinctive(w)} | {q for q in qualifiers if is_distinctive(q)}
    out = []
    for position, trigger in enumerate(triggers):
        for part_no, part in enumerate(trigger.split(",")):
            words = tokens(part)
            if words and any(is_distinctive(w) for w in words) and \
                    (set(words) & known or (position == 0 and part_no == 0)):
                out.append(" ".join(words))
    return out


def _has_identity(names: list[tuple[str, ...]], triggers: list[str]) -> bool:
    return any(is_distinctive(w) for n in names for w in n) or \
        any(is_distinctive(w) for t in triggers for w in t.split())


def _looks_like_character_triggers(triggers: list[str]) -> bool:
    """A made-up name and appearance descriptors: "nyxvalk", "silver hair, winged helmet"."""
    named = any(t not in UNNAMING_TAGS and any(is_distinctive(w) for w in t.split()) for t in triggers)
    described = sum(1 for t in triggers if set(t.split()) & APPEARANCE_WORDS)
    return named and described >= 1


def _dreambooth_person(entry: LoraEntry) -> bool:
    """kohya DreamBooth folders "20_ohwx woman": a made-up token and a person class."""
    for trigger in entry.triggers:
        words = tokens(trigger)
        if len(words) == 2 and is_distinctive(words[0]) and words[1] in _DREAMBOOTH_CLASSES:
            return True
    return False


def _is_speed(raw_names: list[str]) -> bool:
    for raw in raw_names:
        text = raw.lower()
        if _SPEED_UNAMBIGUOUS.search(text) or (_SPEED_WORD.search(text) and _STEP_COUNT.search(text)):
            return True
    return False


def _has_phrase(name_tokens: set[str], raw_names: list[str], phrase: str) -> bool:
    words = phrase.split()
    if len(words) == 1:
        return words[0] in name_tokens
    return any(f" {phrase} " in f" {' '.join(tokens(raw))} " for raw in raw_names)


def _medium_votes(texts: list[str]) -> dict[str, int]:
    """Media named in ``texts`` (normalised phrases), with how often, first found first."""
    found: dict[str, int] = {}
    for text in texts:
        words = text.split()
        for start in range(len(words)):
            for size in range(min(MAX_MEDIUM_WORDS, len(words) - start), 0, -1):
                medium = medium_of_phrase(" ".join(words[start:start + size]))
                if medium:
                    found[medium] = found.get(medium, 0) + 1
                    break
    return found


def _style_medium(name_media: dict[str, int], triggers: list[str], tags: list[str], description: str) -> str:
    scores: dict[str, float] = {}
    order: list[str] = []
    for weight, media in ((3.0, name_media), (2.0, _medium_votes(triggers)),
                          (1.5, _medium_votes([t for t in tags if t not in KIND_TAGS["style"]])),
                          (1.0, _medium_votes([description.strip()]))):
        for medium in media:
            scores[medium] = scores.get(medium, 0.0) + weight
            if medium not in order:
                order.append(medium)
    return max(order, key=lambda m: (scores[m], -order.index(m))) if order else ""


def _training_tags_medium(entry: LoraEntry) -> str:
    """The last resort: a medium among the most frequent training tags (booru noise removed)."""
    tags = [" ".join(tokens(t)) for t in entry.tags[:10]]
    media = _medium_votes([t for t in tags if t and t not in UNNAMING_TAGS][:5])
    return next(iter(media), "")


def _unique_texts(texts: list[str]) -> list[str]:
    out, seen = [], set()
    for text in texts:
        key = " ".join(tokens(text))
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out
