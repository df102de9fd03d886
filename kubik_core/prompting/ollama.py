"""Optional enrichment of the rule-based analysis by a local Ollama model.

One ``POST {url}/api/chat`` with ``stream: false``, ``think: false`` and a JSON Schema as
``format`` (Ollama constrains the model's output to it). The answer is validated here again,
because a model, a proxy or an old server can still send anything. Whatever goes wrong -
nothing listening, no answer within the timeout, an HTTP error, text that is not JSON, JSON of
the wrong shape - the rule-based analysis is returned unchanged with a note saying why.
"""
from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, replace

from .analysis import CONCEPT_CATEGORIES, CONTENT_TYPES, STYLES, PromptAnalysis

MAX_TERMS = 20          # concepts per category kept from the model
MAX_TERM_CHARS = 80
MAX_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True)
class OllamaConfig:
    """Where the Ollama server is, which model to ask, and how long to wait (seconds)."""

    url: str = "http://127.0.0.1:11434"
    model: str = "llama3.2"
    timeout: float = 10.0


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "style": {"type": "string", "enum": [*STYLES, "unknown"]},
        "style_confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "content_type": {"type": "string", "enum": [*CONTENT_TYPES, "unknown"]},
        "concepts": {
            "type": "object",
            "properties": {name: {"type": "array", "items": {"type": "string"}}
                           for name in CONCEPT_CATEGORIES},
            "required": list(CONCEPT_CATEGORIES),
        },
        "negative": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["style", "style_confidence", "content_type", "concepts", "negative", "summary"],
}

_SYSTEM = (
    "You analyse text-to-image prompts. Answer with JSON only, following the schema. "
    "concepts: short phrases from the prompt by category (subject, style, medium, setting, "
    "lighting, camera, quality). style: the artistic style. content_type: what the image "
    "mainly shows. negative: a comma-separated negative prompt suited to the style that does "
    "not contradict the prompt. summary: one paragraph in plain English."
)


class OllamaAnswerError(ValueError):
    """The model's answer does not follow ANSWER_SCHEMA."""


def enrich(analysis: PromptAnalysis, config: OllamaConfig) -> PromptAnalysis:
    """The analysis merged with the model's answer (source "ollama"), or unchanged with a note."""
    try:
        answer = _ask(analysis, config)
    except _Unavailable as exc:
        return _fallback(analysis, str(exc))
    merged = replace(analysis, notes=list(analysis.notes))
    merged.style = answer["style"]
    merged.style_confidence = round(float(answer["style_confidence"]), 3)
    merged.content_type = answer["content_type"]
    merged.concepts = {}
    for category in CONCEPT_CATEGORIES:
        terms = list(analysis.concepts.get(category, []))
        for term in answer["concepts"][category]:
            term = " ".join(term.split()).lower()[:MAX_TERM_CHARS]
            if term and term not in terms and len(terms) < MAX_TERMS + len(analysis.concepts.get(category, [])):
                terms.append(term)
        merged.concepts[category] = terms
    negative = [term.strip() for term in analysis.negative.split(",") if term.strip()]
    for term in answer["negative"].split(","):
        term = " ".join(term.split())[:MAX_TERM_CHARS]
        if term and term.lower() not in {t.lower() for t in negative}:
            negative.append(term)
    merged.negative = ", ".join(negative)
    merged.source = "ollama"
    merged.notes.append(f"enriched by Ollama model {config.model!r}")
    summary = " ".join(answer["summary"].split())[:2000]
    merged.summary = (summary + " " if summary else "") + f"Source: ollama ({config.model})."
    return merged


class _Unavailable(Exception):
    """Why the model's answer cannot be used (the message goes into the notes)."""


def _fallback(analysis: PromptAnalysis, reason: str) -> PromptAnalysis:
    notes = [*analysis.notes, f"Ollama not used ({reason}); rule-based analysis only"]
    fallback = replace(analysis, notes=notes, source="rules")
    from .analyzer import summarize
    fallback.summary = summarize(fallback)
    return fallback


def _request_body(analysis: PromptAnalysis, config: OllamaConfig) -> bytes:
    findings = {"style": analysis.style, "content_type": analysis.content_type,
                "concepts": analysis.concepts}
    user = (f"Prompt:\n{analysis.cleaned[:4000]}\n\nRule-based findings (may be incomplete):\n"
            + json.dumps(findings, ensure_ascii=False))
    body = {
        "model": config.model,
        "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}],
        "stream": False,
        "think": False,
        "format": ANSWER_SCHEMA,
        "options": {"temperature": 0},
    }
    return json.dumps(body).encode("utf-8")


def _ask(analysis: PromptAnalysis, config: OllamaConfig) -> dict:
    url = str(config.url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise _Unavailable(f"ollama url {config.url!r} must start with http:// or https://")
    request = urllib.request.Request(url + "/api/chat", data=_request_body(analysis, config),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=float(config.timeout)) as response:
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise _Unavailable(f"{url} answered HTTP {exc.code}{_error_detail(exc)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise _Unavailable(f"{url} did not answer within {config.timeout:g} s") from None
        if isinstance(exc.reason, ConnectionRefusedError):
            raise _Unavailable(f"nothing listening at {url} (connection refused)") from None
        raise _Unavailable(f"cannot reach {url}: {exc.reason}") from None
    except (TimeoutError, socket.timeout):
        raise _Unavailable(f"{url} did not answer within {config.timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _Unavailable(f"cannot talk to {url}: {exc}") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise _Unavailable("the answer is larger than 1 MiB")
    try:
        envelope = json.loads(raw.decode("utf-8"))
        content = envelope["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("message.content is not a string")
    except (ValueError, KeyError, TypeError) as exc:
        raise _Unavailable(f"the answer is not an Ollama chat reply ({_short(exc)})") from None
    content = content.strip()
    if content.startswith("```"):  # a model that wrapped its JSON in a Markdown fence
        content = content.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(content)
    except ValueError:
        raise _Unavailable("the model's message is not JSON") from None
    try:
        validate(answer)
    except OllamaAnswerError as exc:
        raise _Unavailable(f"the model's JSON does not match the schema: {exc}") from None
    return answer


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read(4096).decode("utf-8")).get("error")
    except Exception:  # the body is optional decoration of the HTTP status
        return ""
    return f": {_short(detail)}" if isinstance(detail, str) and detail else ""


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def validate(answer) -> None:
    """Raise OllamaAnswerError unless ``answer`` follows ANSWER_SCHEMA."""
    if not isinstance(answer, dict):
        raise OllamaAnswerError("expected a JSON object")
    for key in ANSWER_SCHEMA["required"]:
        if key not in answer:
            raise OllamaAnswerError(f"missing {key!r}")
    for key in ("style", "content_type"):
        allowed = ANSWER_SCHEMA["properties"][key]["enum"]
        if answer[key] not in allowed:
            raise OllamaAnswerError(f"{key} {_short(answer[key])!r} is not one of {allowed}")
    confidence = answer["style_confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 <= confidence <= 1:
        raise OllamaAnswerError("style_confidence must be a number in [0, 1]")
    for key in ("negative", "summary"):
        if not isinstance(answer[key], str):
            raise OllamaAnswerError(f"{key} must be a string")
    concepts = answer["concepts"]
    if not isinstance(concepts, dict):
        raise OllamaAnswerError("concepts must be an object")
    for category in CONCEPT_CATEGORIES:
        terms = concepts.get(category)
        if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
            raise OllamaAnswerError(f"concepts.{category} must be a list of strings")
