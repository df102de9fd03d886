"""``summarize``: the one readable paragraph about a prompt analysis ("A photographic portrait
prompt (style confidence 0.82); subjects: ..."). The rule-based analyzer writes it, and the
Ollama enrichment writes it again when it falls back to the rules' findings.
"""
from __future__ import annotations

from .analysis import CONTENT_TYPES, STYLES, PromptAnalysis

_STYLE_WORDS = {"3d_render": "3D-render", "pixel_art": "pixel-art", "concept_art": "concept-art",
                "unknown": "unstyled"}

_SUMMARY_PARTS = (("subject", "subjects: "), ("setting", "setting: "), ("medium", "medium: "),
                  ("lighting", "lighting: "), ("camera", "camera: "), ("quality", "quality tags: "))


def _summary_head(style: str, content: str) -> str:
    style_words = _STYLE_WORDS.get(style, style.replace("_", " "))
    content_words = content.replace("_", " ") if content != "unknown" else "image"
    article = "An" if style_words[0] in "aeiou" else "A"
    return f"{article} {style_words} {content_words} prompt"


# "A photographic portrait prompt", for every style and content type the analyzer reports.
_SUMMARY_HEADS = {(style, content): _summary_head(style, content)
                  for style in (*STYLES, "unknown") for content in (*CONTENT_TYPES, "unknown")}


def summarize(analysis: PromptAnalysis) -> str:
    """One readable paragraph about the analysis."""
    style = analysis.style
    head = _SUMMARY_HEADS.get((style, analysis.content_type)) or \
        _summary_head(style, analysis.content_type)
    if style != "unknown":
        head += f" (style confidence {analysis.style_confidence:.2f})"
    parts = [head]
    concepts = analysis.concepts
    for category, label in _SUMMARY_PARTS:
        items = concepts.get(category)
        if items:
            if len(items) > 4:
                parts.append(f"{label}{', '.join(items[:4])} (+{len(items) - 4} more)")
            else:
                parts.append(label + ", ".join(items))
    overall = analysis.complexity.get("overall", 0.0)
    level = "simple" if overall < 0.25 else "moderate" if overall < 0.5 else \
        "rich" if overall < 0.75 else "very complex"
    text = (f"{'; '.join(parts)}. Complexity {overall:.2f} ({level}), "
            f"{len(analysis.segments)} weighted segment(s)")
    if analysis.embeddings:
        text += f", embeddings: {', '.join(analysis.embeddings)}"
    text += f". Source: {analysis.source}."
    if analysis.notes:
        text += " Notes: " + " ".join([note.rstrip(".") + "." for note in analysis.notes])
    return text
