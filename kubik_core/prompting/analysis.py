"""The result type of prompt analysis, shared by the analyzer, the optimizer, nodes and CLI."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Concept categories, in the order they are reported.
CONCEPT_CATEGORIES = ("subject", "style", "medium", "setting", "lighting", "camera", "quality")

# Complexity dimensions; each is a float in [0, 1]. "overall" is their weighted mean.
COMPLEXITY_DIMENSIONS = ("subjects", "detail", "composition", "lighting", "style_mix", "length")

# Values of PromptAnalysis.style ("unknown" when the prompt gives no evidence).
STYLES = ("photographic", "cinematic", "anime", "illustration", "painting", "watercolor",
          "sketch", "comic", "3d_render", "pixel_art", "concept_art", "abstract")

# Values of PromptAnalysis.content_type ("unknown" when the prompt gives no evidence). A person
# in a place (landscape, cityscape, interior, architecture) is a "scene", or a "character" /
# "portrait" / "group" when a phrase puts the person in focus ("solo", "looking at viewer",
# "upper body"...); only a place without a person is a "landscape" and so on.
CONTENT_TYPES = ("portrait", "character", "group", "animal", "landscape", "cityscape",
                 "architecture", "interior", "vehicle", "food", "product", "scene", "abstract")


@dataclass
class PromptAnalysis:
    """Everything the rule-based (or LLM-enriched) analysis knows about one prompt.

    ``segments`` are ``(text, weight)`` pairs exactly as the chosen dialect weighs them.
    ``concepts`` maps each category of CONCEPT_CATEGORIES to the phrases found for it.
    ``complexity`` maps each of COMPLEXITY_DIMENSIONS plus "overall" to a float in [0, 1].
    ``source`` is "rules" or "ollama"; ``notes`` lists warnings for the user (unbalanced
    brackets, an unreadable weight, an LLM fallback and why).
    ``expanded`` is the prompt with dynamic prompts resolved; ``cleaned`` the same with control
    characters removed and whitespace and commas normalised (the positive prompt to encode);
    ``segments`` weigh ``cleaned`` (its first MAX_ANALYSED_CHARS characters).
    """

    prompt: str
    dialect: str = "comfyui"
    expanded: str = ""
    cleaned: str = ""
    segments: list[tuple[str, float]] = field(default_factory=list)
    concepts: dict[str, list[str]] = field(default_factory=dict)
    style: str = "unknown"
    style_confidence: float = 0.0
    content_type: str = "unknown"
    complexity: dict[str, float] = field(default_factory=dict)
    negative: str = ""
    embeddings: list[str] = field(default_factory=list)
    source: str = "rules"
    notes: list[str] = field(default_factory=list)
    summary: str = ""
    # A1111 only: {"steps", "step", "and_parts": [{"text", "weight"}], "schedules":
    # [{"before", "after", "at_step"}], "alternations": [[option, ...]], "breaks"}; empty for ComfyUI.
    structure: dict[str, Any] = field(default_factory=dict)
    # Midjourney-style parameters found at the end of the prompt and removed from ``cleaned``,
    # e.g. {"ar": "16:9", "no": "cars, people"} ("--no" terms are added to ``negative``).
    parameters: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [[text, weight] for text, weight in self.segments]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PromptAnalysis":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["segments"] = [(str(t), float(w)) for t, w in known.get("segments", [])]
        return cls(**known)
