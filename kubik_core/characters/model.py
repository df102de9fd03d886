"""A character preset: what makes one character come out the same in every image.

A character is the LoRAs trained on it (with their strengths), the words that call it, its
style, the text always added to the positive and negative prompts, the reference pictures the
consistency check compares generated images with, and the threshold that check calibrated.
Every field is checked when a character is read from the registry or built from the command
line, so a hand-edited or hostile registry file can never make a node read outside ComfyUI's
folders or carry unbounded text into a prompt.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from ..loras.errors import LoraStackError
from ..loras.stack import LoraStack, StackItem, check_lora_name, check_strength

MAX_NAME_CHARS = 64
MAX_LORAS = 8
MAX_TRIGGER_WORDS = 16
MAX_TRIGGER_CHARS = 100
MAX_PROMPT_CHARS = 2000           # style, positive and negative additions each
MAX_NOTES_CHARS = 4000
MAX_REFERENCES = 32
MAX_REFERENCE_CHARS = 255
REFERENCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Letters, digits and a few separators; starts with a letter or digit. Names are what the node's
# menu shows and what the command line takes, so nothing that needs quoting or looks like a path.
_NAME = re.compile(r"^[^\W_][\w .'()+-]*$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
FIELDS = ("name", "loras", "trigger_words", "style", "positive", "negative", "references",
          "threshold", "notes")


class CharacterError(ValueError):
    """A character (or a field of one) that cannot be used; the message names the field and the fix."""


@dataclass
class CharacterLora:
    """One LoRA of a character, by its name in ComfyUI's LoRA list (relative to a loras folder)."""

    name: str
    strength_model: float = 1.0
    strength_clip: float = 1.0


@dataclass
class Character:
    name: str
    loras: list[CharacterLora] = field(default_factory=list)
    trigger_words: list[str] = field(default_factory=list)
    style: str = ""                   # e.g. "watercolor, soft pastel palette"
    positive: str = ""                # always added to the positive prompt (appearance, outfit)
    negative: str = ""                # the negative prompt of this character
    references: list[str] = field(default_factory=list)   # pictures in ComfyUI's input folder
    threshold: float | None = None    # consistency threshold, set by the consistency check
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Character":
        """A checked character from its dict form; CharacterError names the first bad field."""
        if not isinstance(data, dict):
            raise CharacterError(f"a character should be an object, found {type(data).__name__}")
        unknown = sorted(repr(str(k)[:40]) for k in data if k not in FIELDS)
        if unknown:
            raise CharacterError(f"unknown field(s) {', '.join(unknown)}; a character has {', '.join(FIELDS)}")
        name = check_name(data.get("name"))
        try:
            loras = data.get("loras", [])
            if not isinstance(loras, list):
                raise CharacterError(f"loras should be a list, found {type(loras).__name__}")
            character = cls(
                name=name,
                loras=[_lora(raw, n) for n, raw in enumerate(loras, 1)],
                trigger_words=_words(data.get("trigger_words", [])),
                style=_text(data.get("style", ""), "style", MAX_PROMPT_CHARS),
                positive=_text(data.get("positive", ""), "positive", MAX_PROMPT_CHARS),
                negative=_text(data.get("negative", ""), "negative", MAX_PROMPT_CHARS),
                references=_references(data.get("references", [])),
                threshold=check_threshold(data.get("threshold")),
                notes=_text(data.get("notes", ""), "notes", MAX_NOTES_CHARS, multiline=True),
            )
        except CharacterError as exc:
            raise CharacterError(f"character {name!r}: {exc}") from None
        if len(character.loras) > MAX_LORAS:
            raise CharacterError(f"character {name!r}: {len(character.loras)} LoRAs; a character has at "
                                 f"most {MAX_LORAS}")
        seen = set()
        for lora in character.loras:
            if lora.name in seen:
                raise CharacterError(f"character {name!r}: LoRA {lora.name!r} is listed twice")
            seen.add(lora.name)
        return character

    def stack(self) -> LoraStack:
        """The character's LoRAs as a KUBIK_LORA_STACK marked as this character's (the
        recommender then keeps them and adds no other character)."""
        items = [StackItem(name=lora.name, strength_model=lora.strength_model,
                           strength_clip=lora.strength_clip) for lora in self.loras]
        return LoraStack(items, character=self.name)

    def positive_prompt(self, prompt: str = "") -> str:
        """Trigger words, positive additions, the scene ``prompt`` and the style, in that order
        (what comes first weighs most)."""
        parts = [", ".join(self.trigger_words), self.positive, prompt, self.style]
        return ", ".join(p.strip().strip(",").strip() for p in parts if p and p.strip().strip(","))

    def negative_prompt(self, negative: str = "") -> str:
        parts = [self.negative, negative]
        return ", ".join(p.strip().strip(",").strip() for p in parts if p and p.strip().strip(","))


def check_name(name: Any) -> str:
    """``name`` when it is a usable character name (1-64 letters, digits, spaces, . ' ( ) + - _)."""
    if not isinstance(name, str) or not name.strip():
        raise CharacterError("a character needs a name (non-empty text)")
    name = unicodedata.normalize("NFC", name)
    if len(name) > MAX_NAME_CHARS:
        raise CharacterError(f"name {name[:40]!r}... is {len(name)} characters long (at most {MAX_NAME_CHARS})")
    if name != name.strip() or "  " in name or not _NAME.match(name):
        raise CharacterError(f"name {name[:MAX_NAME_CHARS]!r} is not usable: start with a letter or digit "
                             "and use letters, digits, single spaces and . ' ( ) + - _")
    return name


def check_threshold(value: Any) -> float | None:
    """A consistency threshold: None (not calibrated yet) or a cosine similarity from 0 to 1, the
    range Kubik Consistency's threshold input takes (0 there means "calibrate")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise CharacterError(f"threshold should be a number from 0 to 1 (or null), found {value!r:.40}")
    return float(value)


def check_reference(name: Any) -> str:
    """A reference picture's name relative to ComfyUI's input folder (never leaving it)."""
    if not isinstance(name, str) or not name.strip():
        raise CharacterError("a reference should be a picture's name in ComfyUI's input folder")
    if len(name) > MAX_REFERENCE_CHARS or any(unicodedata.category(c) == "Cc" for c in name):
        raise CharacterError(f"reference {name[:60]!r} is not a file name")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\", "~")) or _WINDOWS_DRIVE.match(name) or ".." in parts or "" in parts:
        raise CharacterError(f"reference {name[:60]!r} leaves ComfyUI's input folder; give the picture's "
                             "name inside the input folder (e.g. mira/front.png)")
    if not name.lower().endswith(REFERENCE_SUFFIXES):
        raise CharacterError(f"reference {name[:60]!r} is not a picture ({', '.join(REFERENCE_SUFFIXES)})")
    return name


def _lora(raw: Any, n: int) -> CharacterLora:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise CharacterError(f"LoRA {n} should be an object with name, strength_model and strength_clip")
    unknown = sorted(repr(str(k)[:40]) for k in raw if k not in ("name", "strength_model", "strength_clip"))
    if unknown:
        raise CharacterError(f"LoRA {n}: unknown field(s) {', '.join(unknown)}")
    try:
        name = check_lora_name(raw.get("name"))
        return CharacterLora(name, check_strength(raw.get("strength_model", 1.0), "strength_model"),
                             check_strength(raw.get("strength_clip", raw.get("strength_model", 1.0)),
                                            "strength_clip"))
    except LoraStackError as exc:
        raise CharacterError(f"LoRA {n}: {exc}") from None


def _words(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise CharacterError(f"trigger_words should be a list of texts, found {type(value).__name__}")
    if len(value) > MAX_TRIGGER_WORDS:
        raise CharacterError(f"{len(value)} trigger words (at most {MAX_TRIGGER_WORDS})")
    return [_text(w, "a trigger word", MAX_TRIGGER_CHARS) for w in value if not isinstance(w, str) or w.strip()]


def _references(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise CharacterError(f"references should be a list of picture names, found {type(value).__name__}")
    if len(value) > MAX_REFERENCES:
        raise CharacterError(f"{len(value)} references (at most {MAX_REFERENCES})")
    names = [check_reference(v) for v in value]
    if len(set(names)) != len(names):
        raise CharacterError("a reference is listed twice")
    return names


def _text(value: Any, what: str, limit: int, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise CharacterError(f"{what} should be text, found {type(value).__name__}")
    if len(value) > limit:
        raise CharacterError(f"{what} is {len(value)} characters long (at most {limit})")
    allowed = "\n\t" if multiline else ""
    if any(unicodedata.category(c) == "Cc" and c not in allowed for c in value):
        raise CharacterError(f"{what} holds control characters" + ("" if multiline else " (one line only)"))
    return value.strip()
