"""KUBIK_LORA_STACK: the LoRAs to apply, in order, with their strengths.

The recommender produces one; the "Kubik LoRA Stack" node builds one by hand; "Kubik Apply
LoRA Stack" applies it through ComfyUI's own LoRA loader. Plain data, JSON-serialisable.

A stack can also arrive as data: ``to_dict()``'s JSON, or the dict an API-format prompt puts
where a node expects a KUBIK_LORA_STACK (ComfyUI passes such values through unchecked).
``stack_from_input`` accepts those only after checking every field: bounded JSON, a bounded
number of items, finite strengths in range, and names that stay inside the loras folders.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads
from .errors import LoraStackError

MAX_TOTAL_STRENGTH = 3.0
MAX_STRENGTH = 10.0        # per LoRA, as the Kubik LoRA Stack node's strength inputs allow
MAX_ITEMS = 64
MAX_NAME_CHARS = 1024
MAX_STACK_JSON_BYTES = 1024 * 1024
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class StackItem:
    name: str                    # ComfyUI lora_name (relative to a loras folder)
    strength_model: float = 1.0
    strength_clip: float = 1.0
    path: str = ""               # absolute path when known (else resolved through ComfyUI)
    triggers: list[str] = field(default_factory=list)
    sha256: str = ""
    autov2: str = ""
    suggested: bool = False      # chosen by the recommender (vs added by hand)


@dataclass
class LoraStack:
    """Also an explanation section for kubik_core.explain (``title`` + ``explain(verbosity)``)."""

    items: list[StackItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    explanation: dict[str, str] = field(default_factory=dict)   # verbosity -> text, from the recommender
    # The character preset (Kubik Character) these LoRAs come from, "" for other stacks: the
    # recommender keeps such a stack's LoRAs and never adds another character to it.
    character: str = ""

    title = "LoRAs"

    def explain(self, verbosity: str = "standard") -> str:
        if verbosity in self.explanation:
            return self.explanation[verbosity]
        if verbosity == "minimal":
            return ", ".join(f"{i.name} {i.strength_model:g}" for i in self.items) or "no LoRA"
        lines = [f"- {i.name} at {i.strength_model:g} (clip {i.strength_clip:g})"
                 + (" - suggested" if i.suggested else " - added by hand") for i in self.items]
        return "\n".join(lines + [f"- note: {n}" for n in self.notes]) or "No LoRA in the stack."

    def __len__(self) -> int:
        return len(self.items)

    def trigger_text(self) -> str:
        """Trigger words of every item, comma-separated, each once."""
        seen, words = set(), []
        for item in self.items:
            for word in item.triggers:
                if word.lower() not in seen:
                    seen.add(word.lower())
                    words.append(word)
        return ", ".join(words)

    def triggers_missing_from(self, prompt: str) -> list[str]:
        """Trigger phrases of the stack that ``prompt`` does not hold yet, each once.

        A trigger is in the prompt when its words are, in order, whatever the case, weights,
        brackets, escapes or underscores around them: "(nyxvalk:1.2)", "Link \\(Zelda\\)" and
        "link_(zelda)" all hold "link (zelda)". A trigger given as "a, b" is two phrases."""
        from .text_index import tokens

        held = " " + " ".join(tokens(prompt)) + " "
        seen, missing = set(), []
        for item in self.items:
            for trigger in item.triggers:
                for phrase in (p.strip() for p in trigger.split(",")):
                    words = " ".join(tokens(phrase))
                    if not phrase or words in seen:
                        continue
                    seen.add(words)
                    if not words or f" {words} " not in held:
                        missing.append(phrase)
        return missing

    def total_strength(self) -> float:
        return sum(abs(i.strength_model) for i in self.items)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "LoraStack":
        """The stack ``to_dict()`` wrote; raise LoraStackError naming the first bad field."""
        if not isinstance(data, dict):
            raise LoraStackError(f"expected an object with 'items', found {type(data).__name__}")
        items = data.get("items", [])
        if not isinstance(items, list):
            raise LoraStackError(f"items should be a list, found {type(items).__name__}")
        if len(items) > MAX_ITEMS:
            raise LoraStackError(f"{len(items)} items; a stack holds at most {MAX_ITEMS}")
        notes = _texts(data.get("notes", []), "notes")
        explanation = data.get("explanation", {})
        if not isinstance(explanation, dict) or not all(isinstance(v, str) for v in explanation.values()):
            raise LoraStackError("explanation should be an object of texts")
        character = data.get("character", "")
        if not isinstance(character, str) or len(character) > MAX_NAME_CHARS:
            raise LoraStackError("character should be the name of a character preset (text)")
        return cls([_item(raw, n) for n, raw in enumerate(items, 1)], notes, dict(explanation), character)

    def added(self, other: "LoraStack") -> "LoraStack":
        """This stack followed by ``other``'s items not already in it (by name)."""
        names = {i.name for i in self.items}
        explanation = {v: "\n".join(t for t in (self.explain(v), other.explain(v)) if t)
                       for v in set(self.explanation) | set(other.explanation)}
        return LoraStack(self.items + [i for i in other.items if i.name not in names],
                         self.notes + other.notes, explanation, self.character or other.character)


def stack_from_input(value: Any, input_name: str = "lora_stack") -> LoraStack:
    """A node's KUBIK_LORA_STACK input as a checked LoraStack.

    Accepts a LoraStack (its items are checked too: a stack may come from any custom node), the
    dict of ``to_dict()`` or its JSON text. Raises LoraStackError (a ValueError) whose message
    starts with ``input_name`` and says what to fix.
    """
    try:
        if isinstance(value, LoraStack):
            for n, item in enumerate(value.items, 1):
                _check_item(item, n)
            if not isinstance(value.character, str) or len(value.character) > MAX_NAME_CHARS:
                raise LoraStackError("character should be the name of a character preset (text)")
            return value
        if isinstance(value, (str, bytes)):
            try:
                value = bounded_loads(value, max_bytes=MAX_STACK_JSON_BYTES)
            except BoundedJSONError as exc:
                raise LoraStackError(f"not a usable stack JSON ({exc})") from None
        if isinstance(value, dict):
            return LoraStack.from_dict(value)
    except LoraStackError as exc:
        raise LoraStackError(f"{input_name}: {exc}; connect Kubik LoRA Recommender or Kubik LoRA "
                             "Stack, or give the JSON of a stack") from None
    raise LoraStackError(f"{input_name}: expected a KUBIK_LORA_STACK from Kubik LoRA Recommender or "
                         f"Kubik LoRA Stack, found {type(value).__name__}")


def check_lora_name(name: Any) -> str:
    """``name`` when it is a LoRA name relative to a loras folder; LoraStackError otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise LoraStackError("a LoRA name should be non-empty text")
    if len(name) > MAX_NAME_CHARS or "\x00" in name:
        raise LoraStackError(f"LoRA name {name[:60]!r} is not a file name")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name) or ".." in parts:
        raise LoraStackError(f"LoRA name {name[:60]!r} leaves the loras folder; use a name from "
                             "ComfyUI's LoRA list (relative to the loras folder)")
    return name


def check_strength(value: Any, what: str) -> float:
    """``value`` as a float when it is a finite number within +-MAX_STRENGTH."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > MAX_STRENGTH:
        raise LoraStackError(f"{what} should be a number from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}, "
                             f"found {value!r:.40}")
    return float(value)


def _item(raw: Any, n: int) -> StackItem:
    """One item of a stack's dict form (fields it does not know are ignored)."""
    if not isinstance(raw, dict):
        raise LoraStackError(f"item {n} should be an object, found {type(raw).__name__}")
    if "name" not in raw:
        raise LoraStackError(f"item {n} has no name")
    item = StackItem(name=raw["name"], strength_model=raw.get("strength_model", 1.0),
                     strength_clip=raw.get("strength_clip", 1.0), path=raw.get("path", ""),
                     triggers=raw.get("triggers", []), sha256=raw.get("sha256", ""),
                     autov2=raw.get("autov2", ""), suggested=raw.get("suggested", False))
    _check_item(item, n)
    return item


def _check_item(item: StackItem, n: int) -> None:
    try:
        check_lora_name(item.name)
        item.strength_model = check_strength(item.strength_model, "strength_model")
        item.strength_clip = check_strength(item.strength_clip, "strength_clip")
        item.triggers = _texts(item.triggers, "triggers")
        for key in ("path", "sha256", "autov2"):
            if not isinstance(getattr(item, key), str) or len(getattr(item, key)) > MAX_NAME_CHARS:
                raise LoraStackError(f"{key} should be text")
        if not isinstance(item.suggested, bool):
            raise LoraStackError("suggested should be true or false")
    except LoraStackError as exc:
        raise LoraStackError(f"item {n}: {exc}") from None


def _texts(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LoraStackError(f"{what} should be a list of texts")
    if len(value) > 1000:
        raise LoraStackError(f"{what} has {len(value)} entries (at most 1000)")
    return list(value)


def rebalance(items: list[StackItem], limit: float = MAX_TOTAL_STRENGTH) -> bool:
    """Scale strengths down so their absolute sum is at most ``limit``; True if it did.

    Stacked LoRAs add up; past a total of about 3 images overcook (A1111 #13788), so every
    strength is scaled by the same factor, which keeps their ratios.
    """
    total = sum(abs(i.strength_model) for i in items)
    if total <= limit or total == 0:
        return False
    factor = limit / total
    for item in items:
        item.strength_model = round(item.strength_model * factor, 3)
        item.strength_clip = round(item.strength_clip * factor, 3)
    return True
