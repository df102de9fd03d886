"""``analyze_prompt``: rule-based prompt analysis, optionally enriched by a local Ollama.

One pass over the weighted segments reads each comma-separated tag against the curated
vocabulary (vocabulary.py, which caches recurring tags); the readings give concepts by
category, weighted style and content-type votes (a phrase votes each time it appears), and the
counts behind the complexity dimensions. Everything is dict and set work over precomputed tables,
so a typical prompt costs tens of microseconds (benchmarks/prompt_params_throughput.py
measures the rate).
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from .analysis import CONCEPT_CATEGORIES, PromptAnalysis
from .dynamic import expand_dynamic
from .errors import EmptyPromptError, PromptError
from .limits import MAX_PROMPT_CHARS, shorten
from .negative import PERSON_CLASH, clash_words, negative_prompt
from . import syntax_comfyui
from .parsing import check_dialect, parse_prompt
from .summary import summarize
from .vocabulary import VOCABULARY

# Longer prompts are analysed up to here (CLIP reads 75 tokens per chunk; 8k characters is
# dozens of chunks). The cleaned positive prompt keeps the full text.
MAX_ANALYSED_CHARS = 8192

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Bidirectional embeddings, overrides and isolates: they change how text is displayed (the
# "Trojan Source" trick), never what an encoder should read.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
# Lone UTF-16 surrogates: what is left of bytes that were not UTF-8; no encoder can use them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")
_COMMAS = re.compile(r" *,(?: *,)+ *| +, *")   # repeated commas, or spaces before one
_ODD_SPACE = re.compile(r"[^\S ]|  ")        # whitespace other than single spaces
_MJ_TAIL = re.compile(r"(?:^|\s)--[a-zA-Z]")
_MJ_SPLIT = re.compile(r"\s*--(?=[a-zA-Z])")
# A character that shows something: not whitespace, not prompt syntax, and not one of the
# invisible ones (zero-width spaces and joiners, direction marks, soft hyphen, fillers,
# variation selectors, tags), so a prompt of only U+200B counts as empty.
_INVISIBLE = ("\u00ad\u034f\u061c\u115f\u1160\u180e\u200b-\u200f\u2060-\u2064\u2800\u3164"
              "\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef")
_CONTENT = re.compile(f"[^\\s,()\\[\\]{{}}|:\\\\{_INVISIBLE}]")
_ANY_INVISIBLE = re.compile(f"[{_INVISIBLE}]")
MAX_NOTES = 20


def clean_prompt(text: str) -> tuple[str, list[str]]:
    """Text without control, bidirectional-control and lone-surrogate characters, with
    whitespace and commas normalised; and a note for each kind of character removed. Weights,
    escapes and emoji are kept as written."""
    notes: list[str] = []
    if text.isprintable():  # the common case: no control characters, no tabs or newlines
        odd_space = "  " in text
    else:
        for pattern, what in ((_CONTROL, "control character(s)"),
                              (_BIDI, "bidirectional control character(s) (U+202A-U+202E, "
                                      "U+2066-U+2069: they reorder how text is shown)"),
                              (_SURROGATE, "invalid character(s) (lone surrogates, left from "
                                           "text that was not UTF-8)")):
            text, removed = pattern.subn("", text)
            if removed:
                notes.append(f"removed {removed} {what} from the prompt")
        odd_space = _ODD_SPACE.search(text) is not None
    if odd_space:
        text = _SPACES.sub(" ", text)
    if ",," in text or " ," in text:
        text = _COMMAS.sub(", ", text)
    return text.strip(" ,"), notes


def split_parameters(text: str) -> tuple[str, dict[str, str]]:
    """Split Midjourney's trailing ``--name value`` parameters off a prompt."""
    match = _MJ_TAIL.search(text)
    if match is None:
        return text, {}
    parameters = {}
    for piece in _MJ_SPLIT.split(text[match.start():]):
        name, _, value = piece.strip().partition(" ")
        if name:
            parameters[name.lower()] = value.strip(" ,")
    return text[:match.start()].rstrip(" ,"), parameters


def analyze_prompt(text: str, dialect: str = "comfyui", seed: int = 0,
                   wildcards_dir: str | Path | None = None, ollama=None,
                   check_interrupt: Callable[[], None] | None = None) -> PromptAnalysis:
    """Analyse a prompt; see PromptAnalysis for the fields.

    Raises EmptyPromptError for a prompt without visible text, UnknownDialectError for an
    unknown dialect, WildcardError for a missing or escaping wildcard or a dynamic prompt past
    its limits, OllamaConfigError for an Ollama address, model or timeout that cannot be used
    (an address outside the allowed hosts included), and PromptError for
    a prompt longer than MAX_PROMPT_CHARS (all ValueErrors). With an ``ollama`` OllamaConfig
    the result is enriched by the model when it answers well, and otherwise stays rule-based
    with a note saying why. ``check_interrupt`` is called now and then while dynamic prompts
    expand, and may raise to stop the work (ComfyUI's Cancel).
    """
    if not isinstance(text, str):
        raise PromptError(f"prompt must be text, got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"prompt has {len(text):,} characters; the limit is "
                          f"{MAX_PROMPT_CHARS:,}")
    try:
        seed = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise PromptError(f"seed must be a whole number, got {shorten(repr(seed))}") from None
    if dialect != "comfyui" and dialect != "a1111":
        dialect = check_dialect(dialect)
    if ollama is not None:
        from .ollama import check_config
        check_config(ollama)
    expanded = expand_dynamic(text, seed, wildcards_dir, check_interrupt)
    cleaned, notes = clean_prompt(expanded)
    parameters: dict[str, str] = {}
    if "--" in cleaned:
        cleaned, parameters = split_parameters(cleaned)
    if not _CONTENT.search(cleaned):
        invisible = " (it holds only invisible characters)" if _ANY_INVISIBLE.search(cleaned) else ""
        raise EmptyPromptError(f"prompt is empty{invisible}: write what the image should show")
    if parameters:
        shown = " ".join(f"--{shorten(k)} {shorten(v, 40)}".strip()
                         for k, v in list(parameters.items())[:8])
        notes.append(f"Midjourney parameters ({shown}{' ...' if len(parameters) > 8 else ''}) "
                     "are not Stable Diffusion syntax: removed from the positive prompt"
                     + ("; --no terms moved to the negative" if "no" in parameters else ""))
    analysed = cleaned
    if len(cleaned) > MAX_ANALYSED_CHARS:
        cut = cleaned.rfind(",", 0, MAX_ANALYSED_CHARS)
        analysed = cleaned[:cut if cut > MAX_ANALYSED_CHARS // 2 else MAX_ANALYSED_CHARS]
        notes.append(f"prompt has {len(cleaned)} characters: only the first {len(analysed)} "
                     "were analysed (the positive prompt keeps all of it)")
    if dialect == "comfyui":  # the parser itself: ComfyUI prompts have no structure to report
        parsed = None
        segments, embeddings, parse_notes = syntax_comfyui.parse(analysed)
    else:
        parsed = parse_prompt(analysed, dialect)
        segments, embeddings, parse_notes = parsed.segments, parsed.embeddings, parsed.notes
    if parse_notes:
        notes.extend(note for note in dict.fromkeys(parse_notes) if note not in notes)
    if len(notes) > MAX_NOTES:
        notes[MAX_NOTES - 1:] = [f"... and {len(notes) - MAX_NOTES + 1} more notes"]

    concepts, style, confidence, content_type, complexity, negative = _match(segments)
    analysis = PromptAnalysis(
        prompt=text, dialect=dialect, expanded=expanded, cleaned=cleaned, segments=segments,
        concepts=concepts, style=style, style_confidence=confidence, content_type=content_type,
        complexity=complexity, negative=negative, embeddings=embeddings, notes=notes,
        parameters=parameters)
    if parameters.get("no"):
        analysis.negative = ", ".join(filter(None, (parameters["no"], analysis.negative)))
    if parsed is not None:
        analysis.structure = {
            "steps": parsed.steps, "step": parsed.step,
            "and_parts": [{"text": part.text, "weight": part.weight} for part in parsed.parts],
            "schedules": [{"before": s.before, "after": s.after, "at_step": s.at_step}
                          for s in parsed.schedules],
            "alternations": parsed.alternations, "breaks": parsed.breaks}
    analysis.summary = summarize(analysis)
    if ollama is not None:
        from .ollama import enrich
        analysis = enrich(analysis, ollama)
    return analysis


# Content types that describe a place. A figure subject in one of them makes the picture a
# scene (the figure within its setting), or a character picture when a phrase puts the figure in
# focus ("looking at viewer", "solo", "upper body"): booru and photo prompts list the place as
# background detail, and a figure in a landscape is no empty landscape.
_PLACE_TYPES = frozenset({"landscape", "cityscape", "interior", "architecture"})
_FIGURE_TYPES = ("character", "portrait", "group")

# Per lower-cased tag: (word count, entries, concepts, style votes, content votes, composition,
# clash words). The clash words, what the negative prompt must not contradict, also carry the
# markers "@person" (a figure subject) and "@focus" (the figure is in focus). Tags recur across
# prompts, so each is read once.
_TAG_FACTS: dict[str, tuple] = {}
_TAG_FACTS_LIMIT = 50_000
_FOCUS = frozenset({"@focus"})


def _tag_facts(tag: str) -> tuple:
    reading = VOCABULARY.read_tag(tag)
    clash = clash_words(reading.words, reading.figure)
    if reading.focus:
        clash = clash | _FOCUS
    facts = (reading.word_count, reading.entries, reading.concepts, reading.style_votes,
             reading.content_votes, reading.composition, clash)
    if len(_TAG_FACTS) >= _TAG_FACTS_LIMIT:
        _TAG_FACTS.clear()
    _TAG_FACTS[tag] = facts
    return facts


def _match(segments) -> tuple:
    """(concepts, style, style confidence, content type, complexity, negative prompt) from
    weighted segments."""
    cache = _TAG_FACTS
    found: list[list[str]] = [[] for _ in CONCEPT_CATEGORIES]
    distinct: set = set()
    styles: defaultdict[str, float] = defaultdict(float)
    contents: defaultdict[str, float] = defaultdict(float)
    clashes: set[str] = set()
    word_count = composition = emphasised = 0
    for text, weight in segments:
        factor = 1.0
        if weight != 1.0:
            emphasised += 1
            # votes scale with the weight, capped so (x:inf) or (x:1e9) cannot swamp the rest
            factor = weight if 0.0 < weight < 4.0 else (4.0 if weight >= 4.0 else 0.0)
        for tag in text.lower().split(","):
            count, entries, tag_concepts, style_votes, content_votes, framing, clash = \
                cache.get(tag) or _tag_facts(tag)
            if not count:
                continue
            word_count += count
            if clash:
                clashes |= clash
            if entries:
                distinct.update(entries)
                composition += framing
                for index, phrases in tag_concepts:
                    found[index] += phrases
                for style, strength in style_votes:
                    styles[style] += strength * factor
                for content, strength in content_votes:
                    contents[content] += strength * factor
    # each phrase listed once, where it first appears
    concepts = {category: list(dict.fromkeys(phrases)) if len(phrases) > 1 else phrases
                for category, phrases in zip(CONCEPT_CATEGORIES, found)}

    style, confidence = "unknown", 0.0
    if styles:
        style = max(styles, key=styles.__getitem__)
        top, total = styles[style], sum(styles.values())
        if top > 0:
            confidence = round(top / total * top / (top + 2.0), 3)
        else:
            style = "unknown"
    content_type = "unknown"
    if contents:
        best = max(contents, key=contents.__getitem__)
        if contents[best] > 0:
            content_type = best
            if best in _PLACE_TYPES and PERSON_CLASH in clashes:
                content_type = "scene"
                if "@focus" in clashes:
                    content_type = max(_FIGURE_TYPES, key=lambda name: contents.get(name, 0.0))

    strong_styles = len([score for score in styles.values() if score >= 1.5])
    # each dimension saturates at 1.0
    subjects = len(concepts["subject"]) / 4
    subjects = subjects if subjects < 1.0 else 1.0
    detail = (len(distinct) + 0.5 * emphasised) / 16
    detail = detail if detail < 1.0 else 1.0
    framing = (len(concepts["camera"]) + composition) / 5
    framing = framing if framing < 1.0 else 1.0
    lighting = len(concepts["lighting"]) / 3
    lighting = lighting if lighting < 1.0 else 1.0
    mix = (strong_styles - 1 if strong_styles > 1 else 0) + \
        (len(concepts["medium"]) - 1 if len(concepts["medium"]) > 1 else 0)
    style_mix = mix / 3 if mix < 3 else 1.0
    length = word_count / 120 if word_count < 120 else 1.0
    complexity = {
        "subjects": subjects, "detail": detail, "composition": framing, "lighting": lighting,
        "style_mix": style_mix, "length": length,
        "overall": round(0.25 * subjects + 0.2 * detail + 0.15 * framing + 0.1 * lighting
                         + 0.15 * style_mix + 0.15 * length, 4),
    }
    return (concepts, style, confidence, content_type, complexity,
            negative_prompt(style, content_type, clashes))
