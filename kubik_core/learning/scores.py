"""Turning ratings into scores and choices (pure functions, no I/O).

* Wilson lower bound (Evan Miller, "How Not To Sort By Average Rating", z = 1.96): ranks LoRAs
  by the share of good ratings while distrusting small samples; used for ``kubik insights``.
* Bayesian average (C*m + sum r) / (C + n): pulls a few ratings towards a prior mean m; used by
  the recommender, where an unrated LoRA must score as neutral, not as bad.
* Thompson sampling over Beta(1 + wins, 1 + losses) per preset: explores presets that have few
  ratings and settles on the best; UCB1 is the deterministic alternative.
"""
from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

GOOD_RATING = 4     # ratings >= this count as a success
BAD_RATING = 2      # ratings <= this count as a failure; 3 is neutral


def wilson_lower_bound(positive: int, total: int, z: float = 1.96) -> float:
    if total <= 0:
        return 0.0
    phat = positive / total
    denom = 1 + z * z / total
    centre = phat + z * z / (2 * total)
    margin = z * math.sqrt((phat * (1 - phat) + z * z / (4 * total)) / total)
    return max(0.0, (centre - margin) / denom)


def bayesian_average(total: float, count: int, prior_mean: float, prior_weight: float = 5.0) -> float:
    return (prior_weight * prior_mean + total) / (prior_weight + count)


def thompson_choice(arms: Sequence[str], outcomes: Mapping[str, tuple[int, int]],
                    rng: random.Random | None = None) -> str:
    """The arm with the highest draw from Beta(1 + wins, 1 + losses); ties keep ``arms`` order."""
    if not arms:
        raise ValueError("thompson_choice needs at least one arm")
    rng = rng or random.Random()
    best, best_draw = arms[0], -1.0
    for arm in arms:
        wins, losses = outcomes.get(arm, (0, 0))
        draw = rng.betavariate(1 + wins, 1 + losses)
        if draw > best_draw:
            best, best_draw = arm, draw
    return best


def ucb1_choice(arms: Sequence[str], outcomes: Mapping[str, tuple[int, int]]) -> str:
    """Deterministic UCB1: an untried arm first, else the best mean + sqrt(2 ln N / n)."""
    if not arms:
        raise ValueError("ucb1_choice needs at least one arm")
    for arm in arms:
        if sum(outcomes.get(arm, (0, 0))) == 0:
            return arm
    total = sum(sum(outcomes.get(a, (0, 0))) for a in arms)

    def bound(arm: str) -> float:
        wins, losses = outcomes[arm]
        n = wins + losses
        return wins / n + math.sqrt(2 * math.log(total) / n)

    return max(arms, key=bound)
