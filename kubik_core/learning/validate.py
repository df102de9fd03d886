"""Bounds on every value that reaches the learning store.

Ratings arrive from workflow widgets and generations from whatever a graph feeds Kubik Save
Image, so each value is checked before any row is written: ratings are whole numbers 1-5, text
has a length limit (PostgreSQL enforces the column sizes that SQLite ignores), numbers are
finite, and JSON columns hold plain data of bounded depth and size. A value out of bounds raises
LearningError naming the field and the limit; nothing is written then.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Iterable, Mapping

from .errors import LearningError

MAX_PROMPT_CHARS = 100_000      # prompt and negative prompt
MAX_JSON_CHARS = 1_000_000      # analysis and parameters of one generation
MAX_JSON_DEPTH = 32
MAX_COMMENT_CHARS = 10_000
MAX_TAGS = 50
MAX_TAG_CHARS = 64
MAX_KEY_CHARS = 64              # family, style, content type, preset, edited field (String(64) columns)
MAX_NAME_CHARS = 255            # a LoRA's name (String(255))
MAX_PATH_CHARS = 4096           # model name and image path
MAX_LORAS = 256
MAX_STRENGTH = 100.0            # ComfyUI's LoraLoader accepts -100..100
MAX_EDIT_VALUE_CHARS = 10_000
SEED_RANGE = (-(2 ** 63), 2 ** 64 - 1)   # signed 64-bit up to ComfyUI's largest seed
GENERATION_ID_CHARS = 32


def describe(value: Any) -> str:
    """A short, safe description of a value for an error message (never a huge or nested repr)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10 ** 30 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"text of {len(value):,} characters"
    return f"a {type(value).__name__}"


def rating(name: str, value: Any, required: bool = False) -> int | None:
    """A rating 1-5; for optional sub-ratings None or 0 means "not rated"."""
    if value is None or (not required and _is_zero(value)):
        if required:
            raise LearningError(f"{name} is required (a whole number from 1 to 5)")
        return None
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or not 1 <= value <= 5:
        raise LearningError(f"{name} must be a whole number from 1 to 5, got {describe(value)}")
    return int(value)


def _is_zero(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def text(name: str, value: Any, limit: int, required: bool = False) -> str:
    """Text of at most ``limit`` characters (None counts as empty)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise LearningError(f"{name} must be text, got {describe(value)}")
    if len(value) > limit:
        raise LearningError(f"{name} has {len(value):,} characters; the learning store keeps at most "
                            f"{limit:,}: shorten it")
    if required and not value.strip():
        raise LearningError(f"{name} is empty")
    return value


def tags(value: Any) -> list[str]:
    """Tags from a comma-separated text or a list of texts; blank ones dropped."""
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise LearningError(f"tags must be comma-separated text or a list of texts, got {describe(value)}")
    cleaned = []
    for item in items:
        if not isinstance(item, str):
            raise LearningError(f"tags must be texts, got {describe(item)}")
        item = item.strip()
        if len(item) > MAX_TAG_CHARS:
            raise LearningError(f"tag {item[:20]!r}... has {len(item):,} characters (at most "
                                f"{MAX_TAG_CHARS}): shorten it")
        if item:
            cleaned.append(item)
    if len(cleaned) > MAX_TAGS:
        raise LearningError(f"{len(cleaned):,} tags given; the learning store keeps at most {MAX_TAGS}")
    return cleaned


def seed(value: Any) -> str | None:
    """A sampler seed as text (seeds go up to 2**64 - 1, beyond SQL's integers)."""
    if value is None:
        return None
    try:
        number = operator.index(value)       # ints and numpy integers; not floats, text or bools
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or not SEED_RANGE[0] <= number <= SEED_RANGE[1]:
        raise LearningError(f"seed must be a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]}, "
                            f"got {describe(value)}")
    return str(number)


def strength(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LearningError(f"{name} must be a number, got {describe(value)}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_STRENGTH:
        raise LearningError(f"{name} must be a finite number from -{MAX_STRENGTH:g} to "
                            f"{MAX_STRENGTH:g}, got {describe(value)}")
    return number


def generation_id(value: Any) -> str:
    """A generation id as Kubik Save Image returns it (32 hex characters)."""
    if not isinstance(value, str):
        raise LearningError(f"generation_id must be text, got {describe(value)}")
    return value.strip()


def plain_data(name: str, value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data: mappings, lists, text, finite numbers, booleans and None.

    Non-finite floats become None (they are not JSON and would poison averages); other objects
    become their text. Nesting deeper than MAX_JSON_DEPTH is refused (no RecursionError).
    """
    if depth > MAX_JSON_DEPTH:
        raise LearningError(f"{name} is nested more than {MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2 ** 64 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_key(key): plain_data(name, item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_data(name, item, depth + 1) for item in value]
    try:
        return str(value)
    except (RecursionError, ValueError):
        return describe(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else describe(key)


def lora_row(index: int, lora: Any) -> dict[str, Any]:
    """One generation_loras row (without generation_id) from a LoRA of a generation."""
    if not isinstance(lora, Mapping):
        raise LearningError(f"LoRA {index + 1} of the generation must be a mapping, got {describe(lora)}")
    name = text(f"LoRA {index + 1} name", lora.get("name", ""), MAX_NAME_CHARS).strip()
    if not name:
        raise LearningError("every LoRA of a generation needs a name")
    sha256 = text(f"LoRA {name!r} sha256", lora.get("sha256") or "", 64)
    model = strength(f"LoRA {name!r} strength_model", lora.get("strength_model", 1.0))
    clip = strength(f"LoRA {name!r} strength_clip", lora.get("strength_clip", model))
    return dict(lora=name, sha256=sha256, strength_model=model, strength_clip=clip,
                suggested=bool(lora.get("suggested", False)))
