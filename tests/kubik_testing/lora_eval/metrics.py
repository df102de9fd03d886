"""The measures of issue 23 over a recommender's picks for CASES.

Per case, with ``top`` = the first three picks:

* precision@3 = acceptable picks in ``top`` / picks in ``top``. A pick is acceptable when it is in
  ``want`` or ``ok``; a second pick of the same ``want`` group (two alternatives stacked) is not.
  No pick: 1 when nothing was wanted, else 0 (an empty answer is never a free point).
* recall@3 = ``want`` groups with a pick in ``top`` / ``want`` groups (1 when nothing was wanted).

Over every pick (not only the first three):

* unrequested characters: character or real-person LoRAs the case does not accept;
* cross-variant picks: LoRAs made for another model than the case's family (plain SDXL, Pony
  and Illustrious count as different; NoobAI LoRAs belong to the Illustrious family);
* clashing style stacks: cases whose picks hold two style LoRAs of different media.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from statistics import mean
from typing import Mapping, Sequence

from .cases import EvalCase
from .library import BY_NAME

# Which library families fit each kubik_core.params family of the cases.
FITS = {"sd15": {"sd15"}, "sdxl": {"sdxl"}, "pony": {"pony"}, "illustrious": {"illustrious", "noobai"},
        "flux_dev": {"flux"}}
CHARACTER_KINDS = {"character", "person"}
TOP = 3


@dataclass
class CaseScore:
    case: EvalCase
    picks: list[str]
    precision: float
    recall: float
    unacceptable: list[str] = field(default_factory=list)
    missed: list[tuple[str, ...]] = field(default_factory=list)
    unrequested_characters: list[str] = field(default_factory=list)
    cross_variant: list[str] = field(default_factory=list)
    clashes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Scores:
    cases: list[CaseScore]

    @property
    def precision_at_3(self) -> float:
        return mean(c.precision for c in self.cases)

    @property
    def recall_at_3(self) -> float:
        return mean(c.recall for c in self.cases)

    @property
    def picks(self) -> int:
        return sum(len(c.picks) for c in self.cases)

    @property
    def acceptable_share(self) -> float:
        """Acceptable picks among all picks (the issue's "of 79 picks only 61% were acceptable")."""
        total = self.picks
        return (total - sum(len(c.unacceptable) for c in self.cases)) / total if total else 1.0

    @property
    def top_pick_right(self) -> int:
        """Cases whose first pick is acceptable, or that picked nothing when nothing was wanted."""
        return sum(1 for c in self.cases
                   if (c.picks and c.picks[0] in c.case.acceptable) or (not c.picks and not c.case.want))

    @property
    def unrequested_characters(self) -> int:
        return sum(len(c.unrequested_characters) for c in self.cases)

    @property
    def cross_variant(self) -> int:
        return sum(len(c.cross_variant) for c in self.cases)

    @property
    def clashing_stacks(self) -> int:
        return sum(1 for c in self.cases if c.clashes)

    def failures(self) -> list[CaseScore]:
        return [c for c in self.cases if c.precision < 1 or c.recall < 1 or c.unrequested_characters
                or c.cross_variant or c.clashes]


def score_case(case: EvalCase, picks: Sequence[str]) -> CaseScore:
    picks = list(picks)
    top = picks[:TOP]
    groups_used: set[int] = set()
    unacceptable = []
    for name in picks:
        group = next((n for n, g in enumerate(case.want) if name in g), None)
        if group is not None and group not in groups_used:
            groups_used.add(group)
        elif group is not None or name not in case.ok:
            unacceptable.append(name)
    top_bad = sum(1 for name in top if name in unacceptable)
    if top:
        precision = (len(top) - top_bad) / len(top)
    else:
        precision = 0.0 if case.want else 1.0
    satisfied = [g for g in case.want if any(name in g for name in top)]
    recall = len(satisfied) / len(case.want) if case.want else 1.0
    fits = FITS[case.family]
    styles = [(name, BY_NAME[name].medium) for name in picks
              if name in BY_NAME and BY_NAME[name].kind == "style" and BY_NAME[name].medium]
    return CaseScore(
        case=case, picks=picks, precision=precision, recall=recall, unacceptable=unacceptable,
        missed=[g for g in case.want if g not in satisfied],
        unrequested_characters=[n for n in picks if n in BY_NAME and BY_NAME[n].kind in CHARACTER_KINDS
                                and n not in case.acceptable],
        cross_variant=[n for n in picks if n in BY_NAME and BY_NAME[n].family not in fits],
        clashes=[(a, b) for (a, ma), (b, mb) in combinations(styles, 2) if ma != mb])


def score_cases(picks: Mapping[EvalCase, Sequence[str]]) -> Scores:
    """Scores of ``{case: the recommender's picks in stack order}``."""
    return Scores([score_case(case, names) for case, names in picks.items()])


def real_triggers(name: str) -> set[str]:
    """Every trigger phrase a trigger field of the evaluation LoRA ``name`` holds (CivitAI
    trainedWords, also in Lora-Manager's copy, A1111 activation text, ModelSpec trigger_phrase,
    kohya class tokens), lower-cased: what the recommender may append to a prompt."""
    lora = BY_NAME[name]
    words = []
    for source in (lora.civitai, (lora.lora_manager or {}).get("civitai")):
        words += (source or {}).get("trainedWords", [])
    words.append((lora.a1111 or {}).get("activation text", ""))
    words.append(lora.metadata.get("modelspec.trigger_phrase", ""))
    for dataset in json.loads(lora.metadata.get("ss_datasets", "[]")):
        words += [s.get("class_tokens", "") for s in dataset.get("subsets", [])]
    return {p.strip().lower() for w in words for p in w.split(",") if p.strip()}


def false_triggers(name: str, triggers: Sequence[str]) -> list[str]:
    """The phrases of ``triggers`` (a pick's trigger words) that are no trigger of ``name``."""
    allowed = real_triggers(name)
    return [w for t in triggers for w in (p.strip() for p in t.split(",")) if w and w.lower() not in allowed]
