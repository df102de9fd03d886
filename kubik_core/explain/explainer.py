"""Readable explanations of a prompt analysis and a sampling plan.

Four verbosity levels:

* minimal   - one line: what was chosen.
* standard  - a short paragraph per group of choices (prompt, model, sampling, size, cost).
* detailed  - every decision with its reason, the analysis' notes and concepts.
* technical - detailed plus the source behind every value, the estimate's inputs and the raw
              values (overrides, suggestions, confidence).

Extension protocol: later capabilities (LoRA recommendations, learning) add their own parts
through ``sections``: any objects with a ``title`` attribute (str) and an
``explain(verbosity: str) -> str`` method. Each section is rendered after the built-in parts,
in the order given, under its title; an empty string omits it. At "minimal" the section's text
is appended to the one line after " | ", so sections should answer a few words there.
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

from ..params.devices import DEVICES
from ..params.plan import format_seconds

VERBOSITIES = ("minimal", "standard", "detailed", "technical")
_GROUPS = (
    ("Sampling", ("steps", "cfg", "guidance", "sampler_name", "scheduler", "clip_skip")),
    ("Size", ("width", "height")),
)
_LABELS = {"steps": "steps", "cfg": "CFG", "guidance": "guidance", "sampler_name": "sampler",
           "scheduler": "scheduler", "clip_skip": "clip skip", "width": "width", "height": "height",
           "family": "family"}


@runtime_checkable
class ExplainSection(Protocol):
    """What a capability hands to explain() to add its own part of the explanation."""

    title: str

    def explain(self, verbosity: str) -> str: ...


def explain(analysis: Any = None, plan: Any = None, verbosity: str = "standard",
            sections: Iterable[ExplainSection] = ()) -> str:
    """Explain ``analysis`` (PromptAnalysis) and/or ``plan`` (SamplingPlan) at ``verbosity``."""
    if verbosity not in VERBOSITIES:
        raise ValueError(f"verbosity: unknown level {verbosity!r}; choose one of {', '.join(VERBOSITIES)}")
    sections = list(sections)
    for section in sections:
        if not isinstance(section, ExplainSection):
            raise TypeError(f"sections: {type(section).__name__} has no .title and .explain(verbosity)")
    if analysis is None and plan is None and not sections:
        return "Nothing to explain yet: connect a prompt analysis or a sampling plan."
    if verbosity == "minimal":
        return _minimal(analysis, plan, sections)

    parts: list[str] = []
    if analysis is not None:
        parts.append(_analysis_part(analysis, verbosity, plan))
    if plan is not None:
        parts.extend(_plan_parts(plan, verbosity))
    for section in sections:
        text = section.explain(verbosity).strip()
        if text:
            parts.append(f"{section.title}\n{text}")
    return "\n\n".join(parts)


# ------------------------------------------------------------------ minimal
def _minimal(analysis: Any, plan: Any, sections: list[ExplainSection]) -> str:
    pieces: list[str] = []
    if analysis is not None:
        pieces.append(f"{_style_phrase(analysis)} prompt ({analysis.source})")
    if plan is not None:
        guidance = f", guidance {plan.guidance:g}" if plan.guidance is not None else ""
        pieces.append(f"{plan.family}: {plan.width}x{plan.height}, {plan.steps} steps, CFG "
                      f"{plan.cfg:g}{guidance}, {plan.sampler_name}/{plan.scheduler}, "
                      f"~{plan.estimated_vram_gb:.1f} GB, {_time(plan)} on {plan.device}")
    line = " -> ".join(pieces)
    extras = [s.explain("minimal").strip() for s in sections]
    return " | ".join([line] * bool(line) + [e for e in extras if e])


# ------------------------------------------------------------------ analysis
def _analysis_part(analysis: Any, verbosity: str, plan: Any = None) -> str:
    complexity = analysis.complexity.get("overall")
    lines = [f"Prompt: reads as {_article(_style_phrase(analysis))} prompt"
             + (f", complexity {complexity:.2f} of 1" if complexity is not None else "") + "."]
    llm_notes = [n for n in analysis.notes if "ollama" in n.lower() or "llm" in n.lower()]
    if analysis.source == "ollama":
        lines.append("The analysis was enriched by a local LLM"
                     + (f" ({llm_notes[-1]})" if llm_notes else " (Ollama)") + ".")
    else:
        lines.append("The analysis used the built-in rules" + (f" ({llm_notes[-1]})" if llm_notes else "") + ".")
    if verbosity in ("detailed", "technical"):
        for category, phrases in analysis.concepts.items():
            if phrases:
                lines.append(f"- {category}: {', '.join(phrases)}")
        if plan is not None and plan.cfg <= 1.0:
            lines.append(f"- negative prompt: none proposed; at CFG {plan.cfg:g} {plan.family} makes no "
                         "negative pass, so a negative prompt would have no effect")
        elif analysis.negative:
            lines.append(f"- proposed negative prompt: {analysis.negative}")
        for note in analysis.notes:
            lines.append(f"- note: {note}")
    if verbosity == "technical":
        dims = ", ".join(f"{k} {v:.2f}" for k, v in analysis.complexity.items())
        lines.append(f"- style confidence {analysis.style_confidence:.2f}; dialect {analysis.dialect}; "
                     f"complexity: {dims or 'n/a'}")
    return "\n".join(lines)


def _style_phrase(analysis: Any) -> str:
    style = analysis.style if analysis.style != "unknown" else ""
    content = analysis.content_type if analysis.content_type != "unknown" else ""
    return " ".join(w.replace("_", " ") for w in (style, content) if w) or "general"


# ------------------------------------------------------------------ plan
def _plan_parts(plan: Any, verbosity: str) -> list[str]:
    by_field = {d.field: d for d in plan.decisions}
    parts = [_model_part(plan, by_field, verbosity)]
    for title, fields in _GROUPS:
        present = [by_field[f] for f in fields if f in by_field]
        if not present:
            continue
        if verbosity == "standard":
            parts.append(_group_summary(title, present, plan))
        else:
            lines = [f"{title}:"]
            for decision in present:
                line = f"- {_LABELS.get(decision.field, decision.field)} = {decision.value}: {decision.reason}"
                if verbosity == "technical" and decision.source:
                    line += f" [source: {decision.source}]"
                lines.append(line)
            parts.append("\n".join(lines))
    parts.append(_cost_part(plan, verbosity))
    if plan.notes:
        parts.append("Notes:\n" + "\n".join(f"- {n}" for n in plan.notes))
    return parts


def _model_part(plan: Any, by_field: dict, verbosity: str) -> str:
    text = f"Model: {plan.family} family"
    decision = by_field.get("family")
    if decision is not None:
        text += f" ({decision.reason}"
        text += f"; confidence {plan.family_confidence:.1f})" if verbosity != "standard" else ")"
    text += f", {plan.priority} priority, {plan.mode} mode."
    if plan.family_confidence == 0.0:
        text += " The family could not be recognised: these are fallback settings, set the family input."
    if plan.overrides:
        text += " Your values: " + ", ".join(f"{_LABELS.get(k, k)} {v}" for k, v in plan.overrides.items()) + "."
    if verbosity == "technical" and plan.suggested:
        text += " Optimizer's suggestions: " + ", ".join(
            f"{_LABELS.get(k, k)} {v}" for k, v in plan.suggested.items()) + "."
    return text


def _group_summary(title: str, decisions: list, plan: Any) -> str:
    if title == "Size":
        return f"Size: {plan.width}x{plan.height} - {decisions[0].reason.split('; ')[0]}."
    values = ", ".join(f"{_LABELS.get(d.field, d.field)} {d.value}" for d in decisions)
    reasons = []
    for decision in decisions:
        clause = _last_clause(decision.reason)
        if clause not in reasons:
            reasons.append(clause)
    return f"{title}: {values}. Why: " + "; ".join(reasons) + "."


def _last_clause(reason: str) -> str:
    """The most specific part of a reason: the optimizer appends adjustments after '; '."""
    return reason.rsplit("; ", 1)[-1]


def _cost_part(plan: Any, verbosity: str) -> str:
    device = DEVICES.get(plan.device)
    where = device.label if device else plan.device
    if plan.estimated_seconds is None:
        text = (f"Cost: about {plan.estimated_vram_gb:.1f} GB peak memory on {where}; time not "
                "estimated yet (see the notes).")
    else:
        text = (f"Cost: about {plan.estimated_vram_gb:.1f} GB peak memory and "
                f"{format_seconds(plan.estimated_seconds)} per image on {where}.")
    if verbosity == "technical":
        if device is not None:
            text += f" Device basis: {device.basis}."
        text += (" Planning estimate (see kubik_core/params/estimate.py): weights from the model "
                 "card's parameter count, activations from ComfyUI's memory_required formula, "
                 "time from steps x passes x 2 x parameters x tokens over the device's tensor "
                 f"throughput; raw: vram_gb={plan.estimated_vram_gb}, seconds={plan.estimated_seconds}.")
    return text


def _time(plan: Any) -> str:
    if plan.estimated_seconds is None:
        return "time not estimated"
    return f"~{format_seconds(plan.estimated_seconds)}"


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase
