"""``parse_prompt``: a prompt as the weighted segments its UI would feed the text encoder."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import syntax_a1111, syntax_comfyui
from .errors import UnknownDialectError

DIALECTS = ("comfyui", "a1111")


@dataclass
class PromptPart:
    """One ``AND`` sub-prompt (A1111) or the whole prompt (ComfyUI).

    ``text`` is the part at the chosen step with schedules resolved; ``chunks`` are its
    weighted segments split at ``BREAK`` (one chunk when there is none).
    """

    text: str
    weight: float = 1.0
    chunks: list[list[tuple[str, float]]] = field(default_factory=list)


@dataclass
class ScheduleEdit:
    """``[before:after:when]`` (A1111): ``before`` up to step ``at_step``, then ``after``."""

    before: str
    after: str
    at_step: int


@dataclass
class ParsedPrompt:
    """A prompt's weighted segments, and for A1111 its schedule/alternation/BREAK/AND structure.

    ``segments`` are ``(text, weight)`` pairs at ``step`` of ``steps`` (ComfyUI has no steps:
    both are None), every AND part in order, BREAK markers left out (see ``parts``).
    """

    dialect: str
    segments: list[tuple[str, float]]
    parts: list[PromptPart]
    embeddings: list[str] = field(default_factory=list)
    schedules: list[ScheduleEdit] = field(default_factory=list)
    alternations: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: int | None = None
    step: int | None = None

    @property
    def breaks(self) -> int:
        return sum(len(part.chunks) - 1 for part in self.parts)

    @property
    def text(self) -> str:
        """The plain text of all segments (weights and syntax removed)."""
        return "".join(text for text, _ in self.segments)


def check_dialect(dialect: str) -> str:
    name = str(dialect).strip().lower()
    if name not in DIALECTS:
        raise UnknownDialectError(f"unknown prompt dialect {dialect!r}; valid dialects: "
                                  + ", ".join(DIALECTS))
    return name


def parse_prompt(text: str, dialect: str = "comfyui", *, steps: int = 20,
                 step: int = 1) -> ParsedPrompt:
    """Weighted segments of ``text`` as ``dialect`` weighs them.

    For "a1111", ``steps`` is the sampling step count that ``[a:b:0.5]`` fractions refer to and
    ``step`` (1-based) the step whose weights are reported; ComfyUI ignores both.
    """
    dialect = check_dialect(dialect)
    if dialect == "comfyui":
        segments, embeddings, notes = syntax_comfyui.parse(text)
        return ParsedPrompt("comfyui", segments, [PromptPart(text, 1.0, [list(segments)])],
                            embeddings=embeddings, notes=notes)
    return _parse_a1111(text, max(1, int(steps)), min(max(1, int(step)), max(1, int(steps))))


def _tree_text(nodes) -> str:
    return "".join(node if isinstance(node, str) else _node_text(node) for node in nodes)


def _node_text(node) -> str:
    if isinstance(node, syntax_a1111.Scheduled):
        before = _tree_text(node.before) + ":" if node.before is not None else ""
        return f"[{before}{_tree_text(node.after)}:{node.when:g}]"
    return "[" + "|".join(_tree_text(option) for option in node.options) + "]"


def _parse_a1111(text: str, steps: int, step: int) -> ParsedPrompt:
    notes: list[str] = []
    parts, schedules, alternations = [], [], []
    for sub, weight in syntax_a1111.split_and(text, notes):
        # Without "[" there is no schedule or alternation, and a sub-prompt the webui cannot
        # parse is used as written: either way the text at every step is the text itself.
        tree = syntax_a1111.parse_schedule(sub) if "[" in sub else [sub]
        if tree is None:
            if "[" in sub or "|" in sub:
                notes.append("the webui cannot read the [ ] / | structure of "
                             f"{sub.strip()[:60]!r}: it uses that text as it is")
            resolved = sub
        else:
            resolved = syntax_a1111.resolve(tree, step, steps)
            for node in syntax_a1111.walk(tree):
                if isinstance(node, syntax_a1111.Scheduled):
                    schedules.append(ScheduleEdit(
                        _tree_text(node.before or ()), _tree_text(node.after),
                        syntax_a1111.step_of(node.when, steps)))
                else:
                    alternations.append([_tree_text(option) for option in node.options])
        chunks = syntax_a1111.weigh(resolved, notes)
        parts.append(PromptPart(resolved, weight, chunks))
    segments = [segment for part in parts for chunk in part.chunks for segment in chunk]
    return ParsedPrompt("a1111", segments, parts, schedules=schedules,
                        alternations=alternations, notes=list(dict.fromkeys(notes)),
                        steps=steps, step=step)
