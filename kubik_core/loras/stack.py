"""KUBIK_LORA_STACK: the LoRAs to apply, in order, with their strengths.

The recommender produces one; the "Kubik LoRA Stack" node builds one by hand; "Kubik Apply
LoRA Stack" applies it through ComfyUI's own LoRA loader. Plain data, JSON-serialisable.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_TOTAL_STRENGTH = 3.0


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

    def total_strength(self) -> float:
        return sum(abs(i.strength_model) for i in self.items)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoraStack":
        return cls(items=[StackItem(**i) for i in data.get("items", [])], notes=list(data.get("notes", [])),
                   explanation=dict(data.get("explanation", {})))

    def added(self, other: "LoraStack") -> "LoraStack":
        """This stack followed by ``other``'s items not already in it (by name)."""
        names = {i.name for i in self.items}
        explanation = {v: "\n".join(t for t in (self.explain(v), other.explain(v)) if t)
                       for v in set(self.explanation) | set(other.explanation)}
        return LoraStack(self.items + [i for i in other.items if i.name not in names],
                         self.notes + other.notes, explanation)


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
