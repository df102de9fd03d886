"""What the recommender and the optimizer learn from the store.

* ``lora_history_scores``: a Bayesian average of each LoRA's ratings on [0, 1] with a neutral
  prior (0.5, weight 5), so an unrated LoRA scores 0.5 and one good rating moves it a little.
* ``learned_details`` / ``learned_adjustments``: the optimizer's ``learned`` hook. A suggested
  value moves only after at least MIN_CONSISTENT_EDITS consistent user edits in a row (the
  newest ones for the family, and the style when given): numbers all moved the same way, or
  text fields all set to the same value. One edit the other way breaks the run, so a single
  change of mind resets the learning. A number moves from what the optimizer suggested towards
  what you chose (the mean of the final values) by at most MAX_CHANGE_PER_LESSON of the
  suggestion per edit, so three quick 2-step tests move SD1.5's 25 steps to 10 at most, and the
  optimizer then keeps it inside the family's bounds (kubik_core/params/bounds.py: 15 here).
  ``kubik insights --reset FAMILY`` forgets them (LearningStore.forget_edits removes that
  family's edits, and nothing else).
* ``choose_preset``: Thompson sampling (or UCB1) over the presets used for (family, style).
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from ..params.bounds import MAX_CHANGE_PER_LESSON
from ..params.plan import LearnedValue
from .scores import bayesian_average, thompson_choice, ucb1_choice
from .store import LearningStore

MIN_CONSISTENT_EDITS = 3
NEUTRAL_SCORE = 0.5
PRIOR_WEIGHT = 5.0
_INTEGER_FIELDS = {"steps", "width", "height", "clip_skip"}
# The smallest step one edit may always make, per field (a fifth of 4 steps is less than 1).
_MIN_CHANGE = {"steps": 1, "width": 8, "height": 8, "clip_skip": 1}


def lora_history_scores(store: LearningStore) -> dict[str, float]:
    """LoRA name -> history score on [0, 1] (absent names score NEUTRAL_SCORE)."""
    return {name: bayesian_average(total, count, NEUTRAL_SCORE, PRIOR_WEIGHT)
            for name, (count, total, _good) in store.lora_ratings().items()}


def learned_adjustments(store: LearningStore, family: str, style: str = "",
                        min_edits: int = MIN_CONSISTENT_EDITS) -> dict[str, Any]:
    """``{field: learned value}`` (see learned_details)."""
    return {name: item.value for name, item in learned_details(store, family, style, min_edits).items()}


def learned_details(store: LearningStore, family: str, style: str = "",
                    min_edits: int = MIN_CONSISTENT_EDITS) -> dict[str, LearnedValue]:
    """``{field: LearnedValue}`` for the optimizer's ``learned`` argument: the value after the
    per-edit limit, from how many edits, what the user chose and when they last did."""
    by_field: dict[str, list[dict]] = {}
    for edit in store.recent_edits(family, style):
        by_field.setdefault(edit["field"], []).append(edit)
    learned: dict[str, LearnedValue] = {}
    for name, edits in by_field.items():
        run = _consistent_run(edits)
        if len(run) < min_edits:
            continue
        finals = [e["final"] for e in run]
        last_edit = max(e["created_at"] if _is_number(e.get("created_at")) else 0.0 for e in run)
        if all(_is_number(v) for v in finals):
            wanted = sum(finals) / len(finals)
            base = sum(e["suggested"] for e in run) / len(run)
            limit = len(run) * max(_MIN_CHANGE.get(name, 0.0), MAX_CHANGE_PER_LESSON * abs(base))
            value = base + min(limit, max(-limit, wanted - base))
            learned[name] = LearnedValue(_rounded(name, value), len(run), _rounded(name, wanted), last_edit)
        else:
            learned[name] = LearnedValue(finals[0], len(run), finals[0], last_edit)
    return learned


def _rounded(name: str, value: float) -> int | float:
    if name in ("width", "height"):            # the latent grid: multiples of 8
        return int(round(value / 8)) * 8
    return int(round(value)) if name in _INTEGER_FIELDS else round(value, 2)


def _consistent_run(edits: list[dict]) -> list[dict]:
    """The newest edits that agree with the newest one (same direction or same value)."""
    if not edits:
        return []
    first = edits[0]
    run = [first]
    numeric = _is_number(first["final"]) and _is_number(first["suggested"])
    direction = _sign(first["final"] - first["suggested"]) if numeric else 0
    for edit in edits[1:]:
        if numeric:
            if not (_is_number(edit["final"]) and _is_number(edit["suggested"])):
                break
            if _sign(edit["final"] - edit["suggested"]) != direction or direction == 0:
                break
        elif edit["final"] != first["final"]:
            break
        run.append(edit)
    return run


def choose_preset(store: LearningStore, family: str, style: str, presets: Sequence[str],
                  method: str = "thompson", rng: random.Random | None = None) -> str:
    """The preset to use next for (family, style), learned from the ratings of past ones."""
    return choose_from_outcomes(presets, store.preset_outcomes(family, style), method, rng)


def choose_from_outcomes(presets: Sequence[str], outcomes: dict[str, tuple[int, int]],
                         method: str = "thompson", rng: random.Random | None = None) -> str:
    """The preset to use next given each one's (good, bad) ratings (none yet: ``{}``)."""
    if method == "ucb1":
        return ucb1_choice(list(presets), outcomes)
    if method != "thompson":
        raise ValueError(f"method must be 'thompson' or 'ucb1', got {method!r}")
    return thompson_choice(list(presets), outcomes, rng)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)
