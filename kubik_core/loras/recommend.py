"""Pick LoRAs for a prompt from the user's library.

Score of a compatible LoRA = weighted mean of four factors, each on [0, 1]
(default weights 40/30/20/10, configurable):

* semantic   - similarity of the prompt to the LoRA's text (name, title, trigger words,
               training tags, CivitAI tags): cosine of embeddings when an ``embed`` function
               is given (the graph's CLIP), else BM25 (text_index.py), scaled so the best
               candidate of this prompt scores 1.
* keyword    - the analysis' concept phrases, style and content type found among the LoRA's
               words, and its trigger words already in the prompt: 1 - 0.5**matches.
* popularity - CivitAI stats from sidecars: a Bayesian average of the thumbs-up share (prior =
               the library's mean share, weight 20 votes) averaged with log-scaled downloads.
* history    - the user's own ratings of images made with the LoRA (learning store).

Hard filters: another base architecture than the model's family; content above the allowed
NSFW level; the user's blocklist (substring or glob on name, title and tags). A candidate also
needs some relevance (semantic and keyword together at least ``min_relevance``), so a popular
LoRA never rides along with an unrelated prompt. Then: LoRAs of clashing styles are not
stacked (the higher score stays), strengths come from the LoRA's usage tips or preferred
weight, else from relevance and prompt complexity, and a total above 3.0 is scaled down.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..params.plan import PRIORITIES
from .architecture import UNKNOWN, Architecture, compatibility
from .entry import LoraEntry
from .library import LoraLibrary
from .stack import MAX_TOTAL_STRENGTH, LoraStack, StackItem, rebalance
from .text_index import BM25Index, tokens

FACTORS = ("semantic", "keyword", "popularity", "history")
DEFAULT_WEIGHTS = {"semantic": 0.4, "keyword": 0.3, "popularity": 0.2, "history": 0.1}
# Each LoRA patches the model once per load; the speed and low-VRAM priorities keep stacks short.
PRIORITY_MAX_LORAS = {"quality": 6, "balanced": 4, "speed": 2, "low_vram": 2}
NSFW_LEVELS = {"safe": 2, "mature": 4, "everything": 63}   # CivitAI nsfwLevel bit flags (<=)
MIN_RELEVANCE = 0.25
CLASH_SLACK = 10               # candidates looked at beyond the limit, for those skipped by a style clash
EMBED_CANDIDATES = 64          # candidates re-ranked with embeddings (best by the other factors)
NEUTRAL_HISTORY = 0.5
UNREADABLE_SHOWN = 3           # unreadable files named in the notes (the scan lists them all)
POPULARITY_PRIOR_VOTES = 20.0
# Styles that blend; styles from different groups clash when stacked.
STYLE_GROUPS = {
    "photographic": "photo", "cinematic": "photo", "anime": "drawn", "illustration": "drawn",
    "comic": "drawn", "sketch": "drawn", "painting": "painted", "watercolor": "painted",
    "concept_art": "painted", "3d_render": "3d", "pixel_art": "pixel", "abstract": "abstract",
}

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


@dataclass
class Candidate:
    name: str
    score: float
    factors: dict[str, float]
    reason: str
    base: str = UNKNOWN
    style: str = ""
    strength_model: float = 0.0
    strength_clip: float = 0.0
    strength_reason: str = ""
    triggers: list[str] = field(default_factory=list)
    path: str = ""
    sha256: str = ""
    autov2: str = ""


@dataclass
class Recommendation:
    """The picks (in stack order), the best rejected candidates, and why."""

    picks: list[Candidate] = field(default_factory=list)
    rejected: list[Candidate] = field(default_factory=list)
    family: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    similarity: str = "bm25"            # or "embeddings"
    notes: list[str] = field(default_factory=list)
    considered: int = 0
    filtered: dict[str, int] = field(default_factory=dict)   # reason -> count

    title = "LoRAs"

    def stack(self) -> LoraStack:
        from ..explain import VERBOSITIES

        return LoraStack([StackItem(name=c.name, strength_model=c.strength_model,
                                    strength_clip=c.strength_clip, path=c.path, triggers=list(c.triggers),
                                    sha256=c.sha256, autov2=c.autov2, suggested=True)
                          for c in self.picks], list(self.notes),
                         explanation={v: self.explain(v) for v in VERBOSITIES})

    def trigger_text(self) -> str:
        return self.stack().trigger_text()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def explain(self, verbosity: str = "standard") -> str:
        """Readable reasons at kubik_core.explain's levels (minimal, standard, detailed, technical)."""
        if verbosity == "minimal":
            return ", ".join(f"{c.name} {c.strength_model:g}" for c in self.picks) or "no LoRA"
        lines = []
        if not self.picks:
            lines.append(f"No LoRA picked ({self.considered} in the library"
                         + (f", model family {self.family}" if self.family else "") + ").")
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
    vector operations; filters depend on (family, content level, blocklist) only and are cached.
    """

    def __init__(self, library: LoraLibrary | Iterable[LoraEntry]):
        entries = library.sorted_entries() if isinstance(library, LoraLibrary) else list(library)
        self.entries = [e for e in entries if e.readable]
        self.unreadable = [e.name for e in entries if not e.readable]  # named in the notes
        self.position = {e.name: i for i, e in enumerate(self.entries)}
        self.documents = [document_text(e) for e in self.entries]
        self.bm25 = BM25Index(tokens(d) for d in self.documents)
        self.popularity = np.array(_popularity(self.entries), dtype=np.float64)
        # normalised trigger phrase -> LoRAs, keyed by its first word (for "already in the prompt")
        self.triggers: dict[str, list[tuple[str, int, str]]] = {}
        for i, entry in enumerate(self.entries):
            for trigger in entry.triggers:
                words = tokens(trigger)
                if words:
                    self.triggers.setdefault(words[0], []).append((" ".join(words), i, trigger))
        self.styles: dict[int, str] = {}
        self._filters: dict[tuple, tuple[np.ndarray, np.ndarray, list[str]]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def style_of(self, i: int) -> str:
        """The LoRA's style as the prompt analyzer reads its text ("" if none), memoised."""
        if i not in self.styles:
            self.styles[i] = _style_of_text(self.documents[i])
        return self.styles[i]

    def filters(self, group: str, family_id: str, blocked: tuple[str, ...], max_level: int):
        """(reason code per LoRA: 0 kept, else 1 + FILTERS index; score factor; notes), cached."""
        key = (group, family_id, blocked, max_level)
        if key not in self._filters:
            codes = np.zeros(len(self.entries), dtype=np.int8)
            factors = np.ones(len(self.entries))
            notes = [""] * len(self.entries)
            for i, entry in enumerate(self.entries):
                reason, factor, note = _filter_reason(entry, group, family_id, list(blocked), max_level)
                codes[i] = FILTERS.index(reason) + 1 if reason else 0
                factors[i], notes[i] = factor, note
            if len(self._filters) > 16:
                self._filters.clear()
            self._filters[key] = (codes, factors, notes)
        return self._filters[key]


FILTERS = ("blocklist", "content level", "other base architecture")


def document_text(entry: LoraEntry) -> str:
    info = entry.sidecar
    parts = [entry.stem.replace("_", " ").replace("-", " "), entry.title, " ".join(entry.triggers),
             " ".join(entry.tags[:20]), " ".join(info.get("tags", [])),
             info.get("activation_text", "")]
    return " ".join(p for p in parts if p)


def recommend(index: LoraIndex, analysis: Any, family: str | None = None, max_loras: int = 3,
              priority: str = "balanced", blocklist: str | Iterable[str] = "",
              weights: Mapping[str, float] | None = None, history: Mapping[str, float] | None = None,
              embed: Embed | None = None, content: str = "safe",
              min_relevance: float = MIN_RELEVANCE, rejected_shown: int = 5) -> Recommendation:
    """Choose up to ``max_loras`` LoRAs for ``analysis`` (a PromptAnalysis or its dict)."""
    weights = _weights(weights)
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if content not in NSFW_LEVELS:
        raise ValueError(f"content must be one of {', '.join(NSFW_LEVELS)}, got {content!r}")
    if max_loras < 0:
        raise ValueError(f"max_loras must be 0 or more, got {max_loras}")
    prompt, concepts, style, content_type, complexity = _read_analysis(analysis)
    rec = Recommendation(family=family or "", weights=weights, considered=len(index))
    limit = min(max_loras, PRIORITY_MAX_LORAS[priority])
    if limit < max_loras:
        rec.notes.append(f"priority {priority} keeps at most {limit} LoRAs")
    group, family_id = _family_group(family, rec)
    if index.unreadable:
        shown = ", ".join(index.unreadable[:UNREADABLE_SHOWN])
        more = f" and {len(index.unreadable) - UNREADABLE_SHOWN} more" if len(index.unreadable) > UNREADABLE_SHOWN else ""
        rec.notes.append(f"left out {len(index.unreadable)} LoRA file(s) that cannot be read: {shown}{more} "
                         "(`kubik loras scan <loras folder>` lists why)")
    if not len(index):
        return rec
    codes, compat, compat_notes = index.filters(group, family_id, tuple(_patterns(blocklist)),
                                                NSFW_LEVELS[content])

    prompt_words = tokens(prompt)
    prompt_text = " " + " ".join(prompt_words) + " "
    phrases = _concept_phrases(concepts, style, content_type)
    semantic = index.bm25.scores(prompt_words + [w for p in phrases for w in p])
    matches = np.zeros(len(index))
    for words in phrases:
        matches += index.bm25.containing(words)
    in_prompt = _triggers_in_prompt(index, prompt_words, prompt_text)
    for i in in_prompt:
        matches[i] += 2
    relevant = (semantic > 0) | (matches > 0)
    for code, name in enumerate(FILTERS, 1):
        count = int(np.count_nonzero(relevant & (codes == code)))
        if count:
            rec.filtered[name] = count
    candidates = relevant & (codes == 0)
    best = semantic[candidates].max() if candidates.any() else 0.0
    semantic = semantic / best if best > 0 else semantic
    keyword = 1.0 - 0.5 ** matches
    hist = np.full(len(index), NEUTRAL_HISTORY)
    for name, value in (history or {}).items():
        if name in index.position:
            hist[index.position[name]] = value
    if embed is not None and candidates.any():
        _rerank_with_embeddings(index, candidates, semantic, keyword, hist, prompt, embed, weights)
        rec.similarity = "embeddings"
    relevance = 0.5 * semantic + 0.5 * keyword
    score = compat * (weights["semantic"] * semantic + weights["keyword"] * keyword
                      + weights["popularity"] * index.popularity + weights["history"] * hist)

    def candidate(i: int) -> Candidate:
        entry = index.entries[i]
        factors = {"semantic": round(float(semantic[i]), 3), "keyword": round(float(keyword[i]), 3),
                   "popularity": round(float(index.popularity[i]), 3), "history": round(float(hist[i]), 3),
                   "relevance": round(float(relevance[i]), 3)}
        matched = _matched_phrases(index, i, phrases, in_prompt)
        reason = _reason(factors, ", ".join(matched[:4]) + (f"; {compat_notes[i]}" if compat_notes[i] else ""))
        return Candidate(name=entry.name, score=round(float(score[i]), 4), factors=factors, reason=reason,
                         base=entry.base, triggers=list(entry.triggers), path=entry.path,
                         sha256=entry.sha256, autov2=entry.autov2)

    eligible = np.flatnonzero(candidates & (relevance >= min_relevance))
    order = eligible[np.lexsort((eligible, -score[eligible]))]
    taken_groups: dict[str, Candidate] = {}
    for i in order[: limit + CLASH_SLACK] if limit else []:
        if len(rec.picks) >= limit:
            break
        cand = candidate(int(i))
        cand.style = index.style_of(int(i))
        group_name = STYLE_GROUPS.get(cand.style, "")
        clash = next((p for g, p in taken_groups.items() if group_name and g != group_name), None)
        if clash is not None:
            cand.reason = f"{cand.style} style clashes with {clash.name} ({clash.style}), which scores higher"
            rec.rejected.append(cand)
            continue
        if group_name:
            taken_groups.setdefault(group_name, cand)
        _set_strength(cand, index.entries[int(i)], complexity)
        rec.picks.append(cand)
    picked = {c.name for c in rec.picks} | {c.name for c in rec.rejected}
    others = np.flatnonzero(candidates)
    others = others[np.lexsort((others, -score[others]))]
    for i in others:
        if len(rec.rejected) >= rejected_shown:
            break
        if index.entries[int(i)].name in picked:
            continue
        cand = candidate(int(i))
        if relevance[i] < min_relevance:
            cand.reason = f"not relevant enough (relevance {relevance[i]:.2f} < {min_relevance:g})"
        else:
            cand.reason = f"score {cand.score:.2f} is below the {len(rec.picks)} picked"
        rec.rejected.append(cand)
    if rebalance_candidates(rec.picks):
        rec.notes.append(f"total strength above {MAX_TOTAL_STRENGTH:g}: every strength scaled down "
                         "by the same factor")
    return rec


def rebalance_candidates(picks: list[Candidate]) -> bool:
    items = [StackItem(c.name, c.strength_model, c.strength_clip) for c in picks]
    if not rebalance(items):
        return False
    for cand, item in zip(picks, items):
        cand.strength_model, cand.strength_clip = item.strength_model, item.strength_clip
        cand.strength_reason += f", rebalanced to {item.strength_model:g}"
    return True


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


def _read_analysis(analysis: Any) -> tuple[str, dict[str, list[str]], str, str, float]:
    """(prompt, concepts, style, content type, complexity) of a PromptAnalysis, its dict (as an
    API prompt may pass it) or a plain prompt; fields of the wrong type count as absent."""
    if isinstance(analysis, str):
        return analysis, {}, "", "", 0.5
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
    return prompt, concepts, text("style"), text("content_type"), float(overall)


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
                   max_level: int) -> tuple[str, float, str]:
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
    ok, factor, note = compatibility(Architecture(entry.base, entry.variant), group, family_id)
    if not ok:
        return "other base architecture", 0.0, note
    return "", factor, note


def _patterns(blocklist: str | Iterable[str]) -> list[str]:
    if isinstance(blocklist, str):
        blocklist = blocklist.replace("\n", ",").split(",")
    return [p.strip().lower() for p in blocklist if p and p.strip()]


def _concept_phrases(concepts: Mapping[str, Iterable[str]], style: str, content_type: str) -> list[list[str]]:
    phrases = []
    for category, items in concepts.items():
        if category == "quality":
            continue
        for phrase in items:
            words = tokens(str(phrase))
            if words:
                phrases.append(words)
    for extra in (style, content_type):
        if extra:
            phrases.append(tokens(extra.replace("_", " ")))
    return [p for p in phrases if p]


def _triggers_in_prompt(index: LoraIndex, prompt_words: list[str], prompt_text: str) -> dict[int, str]:
    """LoRAs whose trigger phrase is already in the prompt: {LoRA: trigger as written}."""
    found: dict[int, str] = {}
    for word in set(prompt_words):
        for phrase, i, trigger in index.triggers.get(word, ()):
            if i not in found and f" {phrase} " in prompt_text:
                found[i] = trigger
    return found


def _matched_phrases(index: LoraIndex, i: int, phrases: list[list[str]], in_prompt: dict[int, str]) -> list[str]:
    words = set(tokens(index.documents[i]))
    matched = [" ".join(p) for p in phrases if all(w in words for w in p)]
    if i in in_prompt:
        matched.insert(0, f"trigger '{in_prompt[i]}' in the prompt")
    return matched


def _rerank_with_embeddings(index: LoraIndex, candidates: np.ndarray, semantic: np.ndarray,
                            keyword: np.ndarray, hist: np.ndarray, prompt: str, embed: Embed,
                            weights: Mapping[str, float]) -> None:
    """Replace BM25 by embedding similarity for the best EMBED_CANDIDATES candidates (in place)."""
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


def _reason(factors: Mapping[str, float], matched: str) -> str:
    parts = []
    if matched:
        parts.append(f"matches {matched}")
    if factors["semantic"] >= 0.5:
        parts.append(f"text similarity {factors['semantic']:.2f}")
    if factors["popularity"] >= 0.6:
        parts.append("popular on CivitAI")
    if factors["history"] > NEUTRAL_HISTORY + 0.05:
        parts.append("you rated it well")
    elif factors["history"] < NEUTRAL_HISTORY - 0.05:
        parts.append("you rated it poorly")
    return "; ".join(parts) or "weak match"


def _set_strength(cand: Candidate, entry: LoraEntry, complexity: float) -> None:
    info = entry.sidecar
    tips = info.get("usage_tips") or {}
    if tips.get("strength"):
        strength, why = float(tips["strength"]), "from its usage tips"
    elif info.get("preferred_weight"):
        strength, why = float(info["preferred_weight"]), "its preferred weight (A1111 sidecar)"
    else:
        relevance = cand.factors.get("relevance", 0.5)
        # Convention: 0.5-1.0 with relevance, less for complex prompts where LoRAs compete.
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


def _style_of_text(text: str) -> str:
    from ..prompting import analyze_prompt

    try:
        analysis = analyze_prompt(text or "lora")
    except Exception:  # noqa: BLE001 - a LoRA text the analyzer rejects simply has no style
        return ""
    return "" if analysis.style == "unknown" or analysis.style_confidence < 0.3 else analysis.style
