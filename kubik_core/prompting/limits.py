"""Bounds that keep prompt analysis cheap and its result strict JSON, whatever the prompt holds.

A prompt comes from a workflow widget or a web request, so it may hold anything: weights such
as ``(x:inf)`` or ``(x:1e309)``, brackets nested thousands deep, dynamic prompts that expand
exponentially. Each limit here is far above what a person writes and low enough that the
analysis finishes in well under a second.
"""
from __future__ import annotations

import math

# Longest prompt accepted at all (the analysed part is shorter still: MAX_ANALYSED_CHARS).
MAX_PROMPT_CHARS = 1_000_000

# A weight beyond +-MAX_WEIGHT means nothing to a text encoder but ruined conditioning; the
# analysis reports such weights clamped (and NaN as 1.0), with a note, so that every number it
# holds is finite.
MAX_WEIGHT = 100.0


def clamp_weight(value: float, notes: list[str] | None, encoder: str,
                 written: str | None = None) -> float:
    """``value`` inside [-MAX_WEIGHT, MAX_WEIGHT] (NaN becomes 1.0), noting any change.

    ``encoder`` names who would use the raw value ("ComfyUI", "the webui"); ``written`` is the
    weight as the prompt spells it (None for a product of nested brackets).
    """
    if -MAX_WEIGHT <= value <= MAX_WEIGHT:
        return value
    if math.isnan(value):
        clamped = 1.0
    else:
        clamped = MAX_WEIGHT if value > 0 else -MAX_WEIGHT
    if notes is not None:
        problem = "is not finite" if not math.isfinite(value) else f"is beyond +-{MAX_WEIGHT:g}"
        what = "the weight of nested brackets" if written is None else f"weight {shorten(written)!r}"
        notes.append(f"{what} {problem}: analysed as {clamped:g} ({encoder} would use it as is, "
                     "which ruins the image; write a weight such as 1.2)")
    return clamped


def shorten(text: str, limit: int = 24) -> str:
    """``text`` cut to ``limit`` characters for a note (prompts may hold anything, at any length)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."
