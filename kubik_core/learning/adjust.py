"""What the recommender and the optimizer learn from the store.

* ``lora_history_scores``: a Bayesian average of each LoRA's ratings on [0, 1] with a neutral
  prior (0.5, weight 5), so an unrated LoRA scores 0.5 and one good rating moves it a little.
* ``learned_adjustments``: the optimizer's ``learned`` hook. A suggested value moves only after
  at least MIN_CONSISTENT_EDITS consistent user edits in a row (the newest ones for the family,
  and the style when given): numbers all moved the same way (the learned value is the mean of
  the final values, rounded for integer fields), or text fields all set to the same value.
  One edit the other way breaks the run, so a single change of mind resets the learning.
* ``choose_preset``: Thompson sampling (or UCB1) over the presets used for (family, style).
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from .scores import bayesian_average, thompson_choice, ucb1_choice
from .store import LearningStore

MIN_CONSISTENT_EDITS = 3
NEUTRAL_SCORE = 0.5
PRIOR_WEIGHT = 5.0
_INTEGER_FIELDS = {"steps", "width", "height", "clip_skip"}


def lora_history_scores(store: LearningStore) -> dict[str, float]:
    """LoRA name -> history score on [0, 1] (absent names score NEUTRAL_SCORE)."""
    return {name: bayesian_average(total, count, NEUTRAL_SCORE, PRIOR_WEIGHT)
            for name, (count, total, _good) in store.lora_ratings().items()}


def learned_adjustments(store: LearningStore, family: str, style: str = "",
                        min_edits: int = MIN_CONSISTENT_EDITS) -> dict[str, Any]:
    """``{field: value}`` for the optimizer's ``learned`` argument."""
    by_field: dict[str, list[dict]] = {}
    for edit in store.recent_edits(family, style):
        by_field.setdefault(edit["field"], []).append(edit)
    learned: dict[str, Any] = {}
    for name, edits in by_field.items():
        run = _consistent_run(edits)
        if len(run) < min_edits:
            continue
        finals = [e["final"] for e in run]
        if all(_is_number(v) for v in finals):
            mean = sum(finals) / len(finals)
            learned[name] = int(round(mean)) if name in _INTEGER_FIELDS else round(mean, 2)
        else:
            learned[name] = finals[0]
    return learned


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
