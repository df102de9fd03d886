"""Pick LoRAs for a prompt from the user's library, as a knowledgeable user would.

A LoRA is picked only when the prompt asks for it: its evidence (evidence.py: the prompt names
it, calls its trigger, names its medium, asks for fine detail...) must clear a calibrated bar,
``min_evidence`` (0.55: a name or trigger in the prompt clears it, a category word alone never
does). What a LoRA is comes from its own metadata (profile.py): a character, a real person, or a
LoRA nothing describes whose name is a name, is picked only when the prompt names it (its name,
an alias, a trigger with a proper noun), never for "1girl", "old man" or "a knight"; a speed
LoRA (Lightning, Hyper-SD, LCM...) is never picked from a prompt, since it needs other sampler
settings. Fewer right picks beat a full stack: nothing pads the stack to ``max_loras``.

A stack given as ``base`` (a character preset's, from Kubik Character, or one built by hand) is
kept as it is, first: its LoRAs are not picked again and count towards ``max_loras``. When it is
a character preset's, or holds a character or person LoRA, no other LoRA that is picked only
when named (characters, real people, LoRAs whose name is a name) is added: one image, one
character.

Hard filters: another base architecture than the model's family; another SDXL variant (Pony,
Illustrious/NoobAI, plain SDXL) unless ``allow_other_variants``; content above the allowed NSFW
level; the user's blocklist (substring or glob on name, title and tags).

Among the LoRAs that clear the bar, the order is a weighted mean of four factors, each on
[0, 1] (default weights 40/30/20/10, configurable):

* semantic   - similarity of the prompt to the LoRA's text (name, title, trigger words,
               training tags, CivitAI tags): cosine of embeddings when an ``embed`` function
               is given (the graph's CLIP), else BM25 (text_index.py), scaled so the best
               candidate of this prompt scores 1.
* keyword    - the evidence of its names, triggers and tags in the prompt (evidence.py).
* popularity - CivitAI stats from sidecars: a Bayesian average of the thumbs-up share (prior =
               the library's mean share, weight 20 votes) averaged with log-scaled downloads.
* history    - the user's own ratings of images made with the LoRA (learning store).

Then, in that order: a LoRA that does what a better one already picked does (two watercolor
styles, two detail tools, two files of one character) is left out; style LoRAs of different
media (watercolor and pixel art) are not stacked, and a style LoRA whose medium differs from the
one the prompt names is left out unless the prompt names the LoRA itself; only style LoRAs are
judged for clashes. Strengths come from the LoRA's usage tips or preferred weight, else from
the evidence and the prompt's complexity; a total above 3.0 is scaled down. Every LoRA with
some evidence that was left out is listed with the reason.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..params.plan import PRIORITIES
from ..prompting.analysis import PromptAnalysis
from .architecture import UNKNOWN, Architecture, compatibility
from .entry import LoraEntry
from .evidence import NAME_WORDS, EvidenceIndex, Item, PromptEvidence
from .lexicon import IDENTITY_KINDS
from .library import LoraLibrary
from .profile import profile_of
from .stack import MAX_TOTAL_STRENGTH, LoraStack, StackItem, rebalance
from .text_index import BM25Index, tokens

FACTORS = ("semantic", "keyword", "popularity", "history")
DEFAULT_WEIGHTS = {"semantic": 0.4, "keyword": 0.3, "popularity": 0.2, "history": 0.1}
# Each LoRA patches the model once per load; the speed and low-VRAM priorities keep stacks short.
PRIORITY_MAX_LORAS = {"quality": 6, "balanced": 4, "speed": 2, "low_vram": 2}
NSFW_LEVELS = {"safe": 2, "mature": 4, "everything": 63}   # CivitAI nsfwLevel bit flags (<=)
# The bar: above a one-word trigger that is also part of its name's partial evidence ("glass" of
# "made of glass", 0.49), below a name or trigger in the prompt (0.75-1.0) and a detail tool for
# "highly detailed" (0.6); a medium alone (0.4) or a tag alone (0.35) does not clear it.
MIN_EVIDENCE = 0.55
EMBED_CANDIDATES = 64          # candidates re-ranked with embeddings (best by the other factors)
NEUTRAL_HISTORY = 0.5
UNREADABLE_SHOWN = 3           # unreadable files named in the notes (the scan lists them all)
POPULARITY_PRIOR_VOTES = 20.0
KIND_LABELS = {"style": "style", "character": "character", "person": "real person", "concept": "concept",
               "clothing": "clothing", "pose": "pose", "detail": "detail tool", "speed": "speed"}

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


@dataclass
class Candidate:
    name: str
    score: float
    factors: dict[str, float]
    reason: str
    base: str = UNKNOWN
    style: str = ""              # the medium of a style LoRA ("" for other kinds)
    kind: str = ""               # style, character, person, concept, clothing, pose, detail, speed
    strength_model: float = 0.0
    strength_clip: float = 0.0
    strength_reason: str = ""
    triggers: list[str] = field(default_factory=list)
    path: str = ""
    sha256: str = ""
    autov2: str = ""


@dataclass
class Recommendation:
    """The picks (in stack order), the LoRAs left out with their reasons, and notes."""

    picks: list[Candidate] = field(default_factory=list)
    rejected: list[Candidate] = field(default_factory=list)
    family: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    similarity: str = "bm25"            # or "embeddings"
    notes: list[str] = field(default_factory=list)
    considered: int = 0
    filtered: dict[str, int] = field(default_factory=dict)   # reason -> count
    base: LoraStack | None = None       # the stack kept as it is, before the picks

    title = "LoRAs"

    def stack(self) -> LoraStack:
        """The base stack's LoRAs (kept as they are), then the picks."""
        from ..explain import VERBOSITIES

        kept = list(self.base.items) if self.base is not None else []
        return LoraStack(kept + [StackItem(name=c.name, strength_model=c.strength_model,
                                           strength_clip=c.strength_clip, path=c.path,
                                           triggers=list(c.triggers), sha256=c.sha256, autov2=c.autov2,
                                           suggested=True)
                                 for c in self.picks], list(self.notes),
                         explanation={v: self.explain(v) for v in VERBOSITIES},
                         character=self.base.character if self.base is not None else "")

    def trigger_text(self) -> str:
        return self.stack().trigger_text()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def explain(self, verbosity: str = "standard") -> str:
        """Readable reasons at kubik_core.explain's levels (minimal, standard, detailed, technical)."""
        kept = list(self.base.items) if self.base is not None else []
        if verbosity == "minimal":
            return ", ".join(f"{c.name} {c.strength_model:g}" for c in kept + self.picks) or "no LoRA"
        origin = f"character preset {self.base.character}" if self.base and self.base.character else \
            "the incoming stack"
        lines = [f"- {i.name} at {i.strength_model:g}: kept from {origin}" for i in kept]
        if not self.picks:
            lines.append(f"No LoRA picked ({self.considered} in the library"
                         + (f", model family {self.family}" if self.family else "")
                         + "): none is asked for by the prompt" + (" beyond the kept ones." if kept else "."))
        for c in self.picks:
            lines.append(f"- {c.name} at {c.strength_model:g}: {c.reason}")
            if verbosity in ("detailed", "technical"):
                lines.append(f"  strength {c.strength_reason}")
            if verbosity == "technical":
                lines.append("  factors " + ", ".join(f"{k} {v:.2f}" for k, v in c.factors.items())
                             + f" -> score {c.score:.3f} (weights " + ", ".join(
                                 f"{k} {v:.2f}" for k, v in self.weights.items()) + f", {self.similarity})")
        if verbosity in ("detailed", "technical"):
            for c in self.rejected:
                lines.append(f"- not used: {c.name} ({c.reason})")
            if self.filtered:
                lines.append("- filtered out: " + ", ".join(f"{n} ({k})" for k, n in self.filtered.items()))
        lines += [f"- note: {n}" for n in self.notes]
        return "\n".join(lines)


class LoraIndex:
    """Everything about a library that does not depend on the prompt, computed once.

    Per-LoRA factors live in numpy vectors so a query scores the whole library with a few
    vector operations; filters depend on (family, content level, blocklist, variant switch)
    only and are cached.
    """

    def __init__(self, library: LoraLibrary | Iterable[LoraEntry]):
        entries = library.sorted_entries() if isinstance(library, LoraLibrary) else list(library)
        self.entries = [e for e in entries if e.readable]
        self.unreadable = [e.name for e in entries if not e.readable]  # named in the notes
        self.position = {e.name: i for i, e in enumerate(self.entries)}
        self.documents = [document_text(e) for e in self.entries]
        self.bm25 = BM25Index(tokens(d) for d in self.documents)
        self.popularity = np.array(_popularity(self.entries), dtype=np.float64)
        self.profiles = [profile_of(e) for e in self.entries]
        self.speed = np.array([p.kind == "speed" for p in self.profiles], dtype=bool)
        self.evidence = EvidenceIndex([e.triggers for e in self.entries], self.profiles,
                                      [list(e.sidecar.get("tags", [])) + e.spec_tags for e in self.entries],
                                      self.bm25)
        self._filters: dict[tuple, tuple[np.ndarray, np.ndarray, list[str]]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def style_of(self, i: int) -> str:
        """The medium of a style LoRA ("" for a style that fits any medium, and other kinds)."""
        profile = self.profiles[i]
        return profile.medium if profile.kind == "style" else ""

    def filters(self, group: str, family_id: str, blocked: tuple[str, ...], max_level: int,
                allow_other_variants: bool = False):
        """(reason code per LoRA: 0 kept, else 1 + FILTERS index; score factor; notes), cached."""
        key = (group, family_id, blocked, max_level, allow_other_variants)
        if key not in self._filters:
            codes = np.zeros(len(self.entries), dtype=np.int8)
            factors = np.ones(len(self.entries))
            notes = [""] * len(self.entries)
            for i, entry in enumerate(self.entries):
                reason, factor, note = _filter_reason(entry, group, family_id, list(blocked), max_level,
                                                      allow_other_variants)
                codes[i] = FILTERS.index(reason) + 1 if reason else 0
                factors[i], notes[i] = factor, note
            if len(self._filters) > 16:
                self._filters.clear()
            self._filters[key] = (codes, factors, notes)
        return self._filters[key]


FILTERS = ("blocklist", "content level", "other base architecture", "other SDXL variant")


def document_text(entry: LoraEntry) -> str:
    info = entry.sidecar
    parts = [entry.stem.replace("_", " ").replace("-", " "), entry.title, info.get("model_name", ""),
             " ".join(entry.triggers), " ".join(entry.tags[:20]), " ".join(info.get("tags", [])),
             " ".join(entry.spec_tags), info.get("activation_text", "")]
    return " ".join(p for p in parts if p)


def recommend(index: LoraIndex, analysis: Any, family: str | None = None, max_loras: int = 3,
              priority: str = "balanced", blocklist: str | Iterable[str] = "",
              weights: Mapping[str, float] | None = None, history: Mapping[str, float] | None = None,
              embed: Embed | None = None, content: str = "safe", min_evidence: float = MIN_EVIDENCE,
              rejected_shown: int = 5, allow_other_variants: bool = False,
              base: LoraStack | None = None) -> Recommendation:
    """Choose at most ``max_loras`` LoRAs that ``analysis`` (a PromptAnalysis, its dict or a plain
    prompt) asks for: fewer, or none, when fewer clear the evidence bar ``min_evidence`` (0 = no
    bar: every compatible LoRA sharing a word with the prompt may be picked, characters still
    only when named). ``allow_other_variants`` keeps LoRAs of another SDXL variant (Pony on plain
    SDXL...) at a lower score instead of filtering them. ``base`` is a stack to keep as it is
    (see the module docstring: its LoRAs count towards ``max_loras``, and a character's stack
    gets no other character)."""
    weights = _weights(weights)
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if content not in NSFW_LEVELS:
        raise ValueError(f"content must be one of {', '.join(NSFW_LEVELS)}, got {content!r}")
    if max_loras < 0:
        raise ValueError(f"max_loras must be 0 or more, got {max_loras}")
    if not (isinstance(min_evidence, (int, float)) and 0 <= min_evidence <= 1):
        raise ValueError(f"min_evidence must be a number from 0 to 1, got {min_evidence!r}")
    prompt, concepts, complexity = _read_analysis(analysis)
    rec = Recommendation(family=family or "", weights=weights, considered=len(index), base=base)
    limit = min(max_loras, PRIORITY_MAX_LORAS[priority])
    if limit < max_loras:
        rec.notes.append(f"priority {priority} keeps at most {limit} LoRAs")
    kept = list(base.items) if base is not None else []
    room = max(0, limit - len(kept))
    if kept and not room:
        rec.notes.append(f"the incoming stack already holds {len(kept)} LoRA(s) of at most {limit}: none added")
    group, family_id = _family_group(family, rec)
    if index.unreadable:
        shown = ", ".join(index.unreadable[:UNREADABLE_SHOWN])
        more = f" and {len(index.unreadable) - UNREADABLE_SHOWN} more" if len(index.unreadable) > UNREADABLE_SHOWN else ""
        rec.notes.append(f"left out {len(index.unreadable)} LoRA file(s) that cannot be read: {shown}{more} "
                         "(`kubik loras scan <loras folder>` lists why)")
    if not len(index):
        return rec
    codes, compat, compat_notes = index.filters(group, family_id, tuple(_patterns(blocklist)),
                                                NSFW_LEVELS[content], allow_other_variants)
    found = index.evidence.match(prompt)
    evidence = found.total
    semantic = index.bm25.scores(tokens(prompt) + [w for p in _concept_phrases(concepts) for w in p])
    asked = evidence >= max(min_evidence, 1e-9)
    for code, name in enumerate(FILTERS, 1):
        count = int(np.count_nonzero(asked & (codes == code)))
        if count:
            rec.filtered[name] = count
    _note_other_variants(index, asked & (codes == FILTERS.index("other SDXL variant") + 1), rec)
    kept_ids = [index.position[i.name] for i in kept if i.name in index.position]
    in_base = np.zeros(len(index), dtype=bool)
    in_base[kept_ids] = True
    candidates = ((semantic > 0) | (evidence > 0)) & (codes == 0) & ~in_base
    strict = index.evidence.strict
    character = _kept_character(index, base, kept_ids)
    if character:   # one image, one character: no other identity LoRA next to the kept one
        _reject_other_identities(index, rec, np.flatnonzero(candidates & strict & (evidence >= min_evidence)),
                                 character, rejected_shown)
        candidates &= ~strict
    best = semantic[candidates].max() if candidates.any() else 0.0
    semantic = semantic / best if best > 0 else semantic
    hist = np.full(len(index), NEUTRAL_HISTORY)
    for name, value in (history or {}).items():
        if name in index.position:
            hist[index.position[name]] = value
    eligible = candidates & (evidence >= min_evidence) & ~index.speed & (~strict | (evidence > 0))
    if embed is not None and eligible.any():
        _rerank_with_embeddings(index, eligible, semantic, evidence, hist, prompt, embed, weights)
        rec.similarity = "embeddings"
    score = compat * (weights["semantic"] * semantic + weights["keyword"] * evidence
                      + weights["popularity"] * index.popularity + weights["history"] * hist)

    def candidate(i: int) -> Candidate:
        entry, profile = index.entries[i], index.profiles[i]
        factors = {"semantic": round(float(semantic[i]), 3), "keyword": round(float(evidence[i]), 3),
                   "popularity": round(float(index.popularity[i]), 3), "history": round(float(hist[i]), 3),
                   "relevance": round(float(evidence[i]), 3)}
        return Candidate(name=entry.name, score=round(float(score[i]), 4), factors=factors, reason="",
                         base=entry.base, style=index.style_of(i), kind=profile.kind,
                         triggers=list(entry.triggers), path=entry.path, sha256=entry.sha256,
                         autov2=entry.autov2)

    order = np.flatnonzero(eligible)
    # Best score first; between scores within 0.01, a style of the medium the prompt names first
    # ("claymation figure holding stickers": claymation).
    first_named = np.full(len(order), len(found.media), dtype=np.int64)
    for rank, medium in enumerate(found.media):
        first_named[index.evidence.style_medium[order] == medium] = rank
    order = order[np.lexsort((order, first_named, -np.round(score[order], 2)))]
    # The kept LoRAs take part in the overlap and style-clash checks as if picked first.
    taken: list[tuple[int, Candidate, set[str]]] = [
        (i, candidate(i), {f"{it.what}:{it.text}" for it in found.items(i)}) for i in kept_ids]
    full = (f"the stack is full ({limit} LoRAs, {len(kept)} kept from the incoming stack, the others "
            "scoring higher)" if kept else f"the stack is full ({limit} LoRAs picked, all scoring higher)")
    for i in order:
        i = int(i)
        if len(rec.picks) >= room and len(rec.rejected) >= rejected_shown:
            break
        cand = candidate(i)
        items = found.items(i)
        texts = {f"{it.what}:{it.text}" for it in items}
        why_not = "" if len(rec.picks) < room else full
        why_not = _medium_conflict(index, i, found) or _overlap(cand, texts, taken) or why_not
        if why_not:
            cand.reason = why_not
            rec.rejected.append(cand)
            continue
        cand.reason = _reason(index, i, items, cand.factors, compat_notes[i])
        _set_strength(cand, index.entries[i], complexity)
        rec.picks.append(cand)
        taken.append((i, cand, texts))
    _list_below_bar(index, rec, candidates & ~eligible, evidence, score, found, min_evidence, rejected_shown,
                    candidate)
    budget = MAX_TOTAL_STRENGTH - sum(abs(i.strength_model) for i in kept)
    if rec.picks and budget <= 0:
        rec.notes.append(f"the kept LoRAs already reach a total strength of {MAX_TOTAL_STRENGTH:g}: "
                         f"{', '.join(c.name for c in rec.picks)} left out")
        rec.picks = []
    elif rebalance_candidates(rec.picks, budget):
        rec.notes.append(f"total strength above {MAX_TOTAL_STRENGTH:g}: every "
                         + ("added " if kept else "") + "strength scaled down by the same factor")
    return rec


def rebalance_candidates(picks: list[Candidate], limit: float = MAX_TOTAL_STRENGTH) -> bool:
    items = [StackItem(c.name, c.strength_model, c.strength_clip) for c in picks]
    if not rebalance(items, limit):
        return False
    for cand, item in zip(picks, items):
        cand.strength_model, cand.strength_clip = item.strength_model, item.strength_clip
        cand.strength_reason += f", rebalanced to {item.strength_model:g}"
    return True


# ----------------------------------------------------------------------------- why (not)
def _kept_character(index: LoraIndex, base: LoraStack | None, kept_ids: list[int]) -> str:
    """What makes the kept stack a character's: its preset's name, or its character or person
    LoRA's name ("" when it is neither)."""
    if base is None:
        return ""
    if base.character:
        return f"character preset {base.character}"
    for i in kept_ids:
        if index.profiles[i].kind in IDENTITY_KINDS:
            return f"{KIND_LABELS[index.profiles[i].kind]} LoRA {index.entries[i].name}"
    return ""


def _reject_other_identities(index: LoraIndex, rec: Recommendation, ids: np.ndarray, character: str,
                             shown: int) -> None:
    """List the characters (people, LoRAs whose name is a name) the prompt asks for that are left
    out because the kept stack is another character's."""
    for i in ids[:shown]:
        i = int(i)
        profile = index.profiles[i]
        label = KIND_LABELS.get(profile.kind, profile.kind) if profile.kind in IDENTITY_KINDS else \
            "LoRA whose name is a name"
        rec.rejected.append(Candidate(name=index.entries[i].name, score=0.0, factors={}, kind=profile.kind,
                                      base=index.entries[i].base,
                                      reason=f"{label}: the stack keeps {character}, and no other "
                                             "character is added to it"))


def _medium_conflict(index: LoraIndex, i: int, found: PromptEvidence) -> str:
    """A style LoRA of another medium than the one the prompt names (unless the prompt names it)."""
    medium = index.style_of(i)
    if medium and found.media and medium not in found.media and found.lexical[i] < NAME_WORDS:
        return f"its medium ({medium}) is not the one the prompt asks for ({', '.join(found.media)})"
    return ""


def _overlap(cand: Candidate, texts: set[str], taken: list[tuple[int, Candidate, set[str]]]) -> str:
    """A LoRA that does what one already picked does, or a style that clashes with a picked one."""
    for _j, picked, picked_texts in taken:
        if texts and picked.kind == cand.kind and texts <= picked_texts:
            return f"does what {picked.name} does for this prompt, which scores higher"
        if cand.style and picked.style and cand.style != picked.style:
            return f"{cand.style} style clashes with {picked.name} ({picked.style}), which scores higher"
    return ""


def _list_below_bar(index: LoraIndex, rec: Recommendation, below: np.ndarray, evidence: np.ndarray,
                    score: np.ndarray, found: PromptEvidence, bar: float, shown: int, candidate) -> None:
    """The best LoRAs that did not clear the bar, each with why (most evidence first)."""
    ids = np.flatnonzero(below)
    if not len(ids) or len(rec.rejected) >= shown:
        return
    ids = ids[np.lexsort((ids, -score[ids], -evidence[ids]))][: shown - len(rec.rejected)]
    for i in ids:
        i = int(i)
        cand = candidate(i)
        profile = index.profiles[i]
        if profile.kind == "speed":
            cand.reason = ("speed LoRA: it needs its own sampler settings (few steps, low CFG), so it is "
                           "never picked from a prompt; add it by hand with a matching preset")
        elif profile.named_strictly and evidence[i] == 0:
            label = KIND_LABELS.get(profile.kind, profile.kind) if profile.kind in IDENTITY_KINDS else \
                "LoRA nothing describes, whose name is a name"
            cand.reason = f"{label}: picked only when the prompt names it ({_how_to_name(index, i)})"
        else:
            items = found.items(i)
            said = "; ".join(_describe(it) for it in items[:2])
            cand.reason = (f"the prompt does not ask for it clearly enough (evidence {evidence[i]:.2f} < "
                           f"{bar:g}" + (f": {said})" if said else ": it only shares words with the prompt)"))
        rec.rejected.append(cand)


def _how_to_name(index: LoraIndex, i: int) -> str:
    entry, profile = index.entries[i], index.profiles[i]
    names = [" ".join(n) for n in profile.names[:1]]
    triggers = [t for t in entry.triggers[:1]]
    ways = [f"'{w}'" for w in names + triggers]
    return "with " + " or ".join(ways) if ways else "by its name or trigger"


def _describe(item: Item) -> str:
    if item.what == "trigger":
        return f"trigger '{item.text}' in the prompt"
    if item.what == "name":
        return f"the prompt names it ('{item.text}')"
    if item.what == "tag":
        return f"its tag '{item.text}' is in the prompt"
    if item.what == "medium":
        return f"the prompt asks for {item.text}, its medium"
    if item.what == "detail":
        return f"the prompt asks for detail ('{item.text}')"
    return f"part of its name ('{item.text}') is in the prompt"


def _reason(index: LoraIndex, i: int, items: list[Item], factors: Mapping[str, float], note: str) -> str:
    profile = index.profiles[i]
    label = KIND_LABELS.get(profile.kind, profile.kind)
    if profile.kind == "style" and profile.medium:
        label += f" ({profile.medium})"
    parts = [_describe(it) for it in items[:3]] or [f"shares words with the prompt (similarity "
                                                    f"{factors['semantic']:.2f})"]
    if factors["popularity"] >= 0.6:
        parts.append("popular on CivitAI")
    if factors["history"] > NEUTRAL_HISTORY + 0.05:
        parts.append("you rated it well")
    elif factors["history"] < NEUTRAL_HISTORY - 0.05:
        parts.append("you rated it poorly")
    if note:
        parts.append(note)
    return f"{label}: " + "; ".join(parts)


def _note_other_variants(index: LoraIndex, mask: np.ndarray, rec: Recommendation) -> None:
    ids = np.flatnonzero(mask)
    if len(ids):
        names = ", ".join(index.entries[int(i)].name for i in ids[:UNREADABLE_SHOWN])
        more = f" and {len(ids) - UNREADABLE_SHOWN} more" if len(ids) > UNREADABLE_SHOWN else ""
        rec.notes.append(f"left out {len(ids)} LoRA(s) the prompt asks for that are made for another SDXL "
                         f"variant (Pony, Illustrious or plain SDXL): {names}{more}; allow_other_variants "
                         "(--allow-other-variants) uses them")


# ----------------------------------------------------------------------------- pieces
def _weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_WEIGHTS)
    for key, value in (weights or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise ValueError(f"unknown weight {key!r}; use {', '.join(FACTORS)}")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"weight {key} must be a number >= 0, got {value!r}")
        merged[key] = float(value)
    total = sum(merged.values())
    if total <= 0:
        raise ValueError("at least one weight must be above 0")
    return {k: v / total for k, v in merged.items()}


def _read_analysis(analysis: Any) -> tuple[str, dict[str, list[str]], float]:
    """(prompt, concepts, complexity) of a PromptAnalysis, its dict (as an API prompt may pass
    it) or a plain prompt; fields of the wrong type count as absent. The analysis' style and
    content type are categories ("anime", "character"), not words a LoRA can be asked by."""
    if isinstance(analysis, str):
        return analysis, {}, 0.5
    if isinstance(analysis, PromptAnalysis):   # its fields, without to_dict()'s deep copy
        data = {k: getattr(analysis, k) for k in ("cleaned", "expanded", "prompt", "complexity", "concepts")}
    else:
        data = analysis.to_dict() if hasattr(analysis, "to_dict") else analysis
    if not isinstance(data, Mapping):
        raise ValueError(f"analysis: expected a prompt analysis, found {type(analysis).__name__}; "
                         "connect Kubik Prompt Analyzer")

    def text(key: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) and value != "unknown" else ""

    prompt = text("cleaned") or text("expanded") or text("prompt")
    complexity = data.get("complexity")
    overall = complexity.get("overall", 0.5) if isinstance(complexity, Mapping) else 0.5
    if isinstance(overall, bool) or not isinstance(overall, (int, float)) or not math.isfinite(overall):
        overall = 0.5
    concepts = data.get("concepts")
    concepts = {str(k): [p for p in v if isinstance(p, str)] for k, v in concepts.items()
                if isinstance(v, (list, tuple))} if isinstance(concepts, Mapping) else {}
    return prompt, concepts, float(overall)


def _family_group(family: str | None, rec: Recommendation) -> tuple[str, str]:
    if not family:
        rec.notes.append("no model family given: LoRAs of every base architecture are considered")
        return "", ""
    from ..params import get_family
    from ..params.errors import ParamsError

    try:
        profile = get_family(family)
    except (ParamsError, KeyError, ValueError) as exc:
        raise ValueError(f"unknown model family {family!r}: {exc}") from exc
    return profile.group, profile.id


def _filter_reason(entry: LoraEntry, group: str, family_id: str, blocked: list[str],
                   max_level: int, allow_other_variants: bool) -> tuple[str, float, str]:
    """(filter name or "", score factor, compatibility note)."""
    info = entry.sidecar
    if blocked:
        fields = [entry.name.lower(), entry.stem.lower(), entry.title.lower()] + \
                 [t.lower() for t in info.get("tags", [])] + [t.lower() for t in entry.tags[:10]]
        for pattern in blocked:
            if any(pattern in f or fnmatch.fnmatchcase(f, pattern) for f in fields):
                return "blocklist", 0.0, ""
    level = int(info.get("nsfw_level") or 0)
    if (level and level > max_level) or (info.get("nsfw") and max_level < NSFW_LEVELS["mature"]):
        return "content level", 0.0, ""
    if not group:
        return "", 1.0, ""
    # The variant is known when CivitAI names the base model or kohya the training checkpoint.
    known = bool(entry.variant) or entry.arch_source == "civitai" or bool(entry.base_model_name)
    return compatibility(Architecture(entry.base, entry.variant), group, family_id, allow_other_variants, known)


def _patterns(blocklist: str | Iterable[str]) -> list[str]:
    if isinstance(blocklist, str):
        blocklist = blocklist.replace("\n", ",").split(",")
    return [p.strip().lower() for p in blocklist if p and p.strip()]


def _concept_phrases(concepts: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The analysis' concept phrases (not its quality tags) as words, for text similarity."""
    phrases = []
    for category, items in concepts.items():
        if category == "quality":
            continue
        for phrase in items:
            words = tokens(str(phrase))
            if words:
                phrases.append(words)
    return phrases


def _rerank_with_embeddings(index: LoraIndex, candidates: np.ndarray, semantic: np.ndarray,
                            keyword: np.ndarray, hist: np.ndarray, prompt: str, embed: Embed,
                            weights: Mapping[str, float]) -> None:
    """Replace BM25 by embedding similarity for the best EMBED_CANDIDATES of the LoRAs that
    cleared the bar (in place): embeddings order what the prompt asks for, never add to it."""
    ids = np.flatnonzero(candidates)
    prior = (weights["semantic"] * semantic + weights["keyword"] * keyword
             + weights["popularity"] * index.popularity + weights["history"] * hist)[ids]
    head = ids[np.argsort(-prior, kind="stable")[:EMBED_CANDIDATES]]
    vectors = embed([prompt] + [index.documents[i] for i in head])
    sims = np.array([_cosine(vectors[0], v) for v in vectors[1:]])
    rest = np.setdiff1d(ids, head)
    semantic[rest] = 0.0          # not re-ranked: no embedding evidence
    span = float(sims.max() - sims.min())
    semantic[head] = (sims - sims.min()) / span if len(sims) > 1 and span > 0 else np.clip(sims, 0, 1)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _set_strength(cand: Candidate, entry: LoraEntry, complexity: float) -> None:
    info = entry.sidecar
    tips = info.get("usage_tips") or {}
    if tips.get("strength"):
        strength, why = float(tips["strength"]), "from its usage tips"
    elif info.get("preferred_weight"):
        strength, why = float(info["preferred_weight"]), "its preferred weight (A1111 sidecar)"
    else:
        relevance = cand.factors.get("relevance", 0.5)
        # Convention: 0.5-1.0 with the evidence, less for complex prompts where LoRAs compete.
        strength = (0.5 + 0.5 * relevance) * (1.0 - 0.25 * max(0.0, min(1.0, complexity)))
        strength = max(0.3, min(1.0, round(strength, 2)))
        why = f"from relevance {relevance:.2f} and prompt complexity {complexity:.2f}"
    low, high = tips.get("strength_min"), tips.get("strength_max")
    if low is not None and strength < low:
        strength, why = float(low), why + f", raised to its minimum {low:g}"
    if high is not None and strength > high:
        strength, why = float(high), why + f", lowered to its maximum {high:g}"
    cand.strength_model = round(strength, 3)
    cand.strength_clip = round(float(tips.get("clip_strength") or strength), 3)
    cand.strength_reason = why


def _popularity(entries: list[LoraEntry]) -> list[float]:
    ups = [int(e.sidecar.get("thumbs_up") or 0) for e in entries]
    downs = [int(e.sidecar.get("thumbs_down") or 0) for e in entries]
    dls = [int(e.sidecar.get("downloads") or 0) for e in entries]
    votes = sum(ups) + sum(downs)
    prior = (sum(ups) / votes) if votes else 0.5
    top = math.log10(1 + max(dls, default=0)) or 1.0
    out = []
    for up, down, dl in zip(ups, downs, dls):
        approval = (POPULARITY_PRIOR_VOTES * prior + up) / (POPULARITY_PRIOR_VOTES + up + down)
        out.append(0.5 * approval + 0.5 * math.log10(1 + dl) / top)
    return out
