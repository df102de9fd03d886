"""ComfyUI's prompt weighting, as CLIPTextEncode applies it (comfy/sd1_clip.py).

ComfyUI escapes ``\\(`` and ``\\)``, splits the text into top-level items with a bracket
counter, gives every ``( )`` item ×1.1 (or the absolute weight after its last ``:`` when that
parses as a float) and recurses into it. Its quirks are reproduced on purpose, because the
segments must be the weights the model really gets:

* ``(x`` left open: the rest of the text stays literal at the outer weight;
* a stray ``)`` drives the counter negative, so later brackets only pair up again once it
  comes back to zero;
* ``(x:abc)`` keeps ``x:abc`` as text at ×1.1; ``(x:1e1)`` and negative weights are accepted;
* ``[x]``, ``{x}``, ``BREAK``, ``AND`` mean nothing special.

The scan jumps from bracket to bracket with one precompiled regex instead of walking every
character, and nesting deeper than MAX_NESTING is kept as literal text (ComfyUI itself hits
Python's recursion limit near 1000 levels).
"""
from __future__ import annotations

import math
import re

MAX_NESTING = 100

_BRACKET = re.compile(r"[()]")
# Text whose brackets are all single, closed, un-nested groups: "a (b:1.2) c (d)".
_FLAT = re.compile(r"[^()]*(?:\([^()]*\)[^()]*)*")
_FLAT_GROUP = re.compile(r"\(([^()]*)\)")
_EMBEDDING = re.compile(r"(?:^|(?<=[ \n]))embedding:(\S+)")

ESCAPED_CLOSE = "\0\1"
ESCAPED_OPEN = "\0\2"


def escape(text: str) -> str:
    return text.replace("\\)", ESCAPED_CLOSE).replace("\\(", ESCAPED_OPEN)


def unescape(text: str) -> str:
    return text.replace(ESCAPED_CLOSE, ")").replace(ESCAPED_OPEN, "(")


def _items(text: str, lo: int, hi: int, balance: list[int] | None = None) -> list[tuple[int, int]]:
    """Top-level items of text[lo:hi] as (start, end), exactly as sd1_clip.parse_parentheses.

    ``balance``, when given, receives the lowest and the final bracket level.
    """
    items = []
    start = lo
    level = lowest = 0
    for match in _BRACKET.finditer(text, lo, hi):
        pos = match.start()
        if text[pos] == "(":
            if level == 0:
                if pos > start:
                    items.append((start, pos))
                start = pos
            level += 1
        else:
            level -= 1
            if level == 0:
                items.append((start, pos + 1))
                start = pos + 1
            elif level < lowest:
                lowest = level
    if hi > start:
        items.append((start, hi))
    if balance is not None:
        balance[:] = [lowest, level]
    return items


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def weigh(escaped: str, notes: list[str] | None = None) -> list[tuple[str, float]]:
    """Weighted segments of an already escaped text (sd1_clip.token_weights), still escaped."""
    out: list[tuple[str, float]] = []
    # Work stack of (lo, hi, weight, depth), depth -1 for literal text; pushed in reverse so
    # segments come out in text order.
    stack = [(0, len(escaped), 1.0, 0)]
    balance = [0, 0]
    too_deep = False
    while stack:
        lo, hi, current, depth = stack.pop()
        if depth < 0 or (escaped.find("(", lo, hi) < 0 and escaped.find(")", lo, hi) < 0):
            out.append((escaped[lo:hi], current))
            continue
        pending = []
        for start, end in _items(escaped, lo, hi, balance if depth == 0 else None):
            if end - start >= 2 and escaped[start] == "(" and escaped[end - 1] == ")":
                if depth >= MAX_NESTING:
                    too_deep = True
                    pending.append((start + 1, end - 1, current, -1))
                    continue
                inner_lo, inner_hi = start + 1, end - 1
                weight = current * 1.1
                colon = escaped.rfind(":", inner_lo, inner_hi)
                if colon > inner_lo:
                    value = _parse_float(escaped[colon + 1:inner_hi])
                    if value is not None:
                        weight = value
                        inner_hi = colon
                        if notes is not None and not math.isfinite(value):
                            notes.append(f"weight {value} is not finite: ComfyUI would use it as is")
                    elif notes is not None:
                        notes.append(f"weight {escaped[colon + 1:inner_hi]!r} is not a number: "
                                     "ComfyUI keeps it as text at x1.1")
                if inner_hi > inner_lo:
                    pending.append((inner_lo, inner_hi, weight, depth + 1))
            else:
                pending.append((start, end, current, -1))
        stack.extend(reversed(pending))
    if notes is not None and balance[0] < 0:
        notes.append("a ')' has no matching '(': ComfyUI pairs the brackets after it "
                     "differently (escape it as \\) to keep it literal)")
    elif notes is not None and balance[1] > 0:
        notes.append("a '(' is never closed: ComfyUI keeps the rest of the text unweighted "
                     "(close it, or escape it as \\()")
    if too_deep and notes is not None:
        notes.append(f"brackets nested deeper than {MAX_NESTING} levels were kept as text")
    return out


def weigh_flat(escaped: str, notes: list[str]) -> list[tuple[str, float]]:
    """weigh() for text matching _FLAT (the common case), in one regex pass."""
    out: list[tuple[str, float]] = []
    pos = 0
    for match in _FLAT_GROUP.finditer(escaped):
        if match.start() > pos:
            out.append((escaped[pos:match.start()], 1.0))
        pos = match.end()
        inner = match.group(1)
        if not inner:
            continue
        colon = inner.rfind(":")
        if colon > 0:
            value = _parse_float(inner[colon + 1:])
            if value is not None:
                if not math.isfinite(value):
                    notes.append(f"weight {value} is not finite: ComfyUI would use it as is")
                out.append((inner[:colon], value))
                continue
            notes.append(f"weight {inner[colon + 1:]!r} is not a number: "
                         "ComfyUI keeps it as text at x1.1")
        out.append((inner, 1.1))
    if len(escaped) > pos:
        out.append((escaped[pos:], 1.0))
    return out


def parse(text: str) -> tuple[list[tuple[str, float]], list[str], list[str]]:
    """Segments (text, weight), embedding names and notes for a ComfyUI prompt."""
    notes: list[str] = []
    # escaping (and the unescape ComfyUI applies to every segment) can only change text that
    # holds a backslash or a NUL
    escapes = "\\" in text or "\0" in text
    escaped = escape(text) if escapes else text
    if "(" in escaped or ")" in escaped:
        weighed = weigh_flat(escaped, notes) if _FLAT.fullmatch(escaped) else weigh(escaped, notes)
        segments = [(unescape(part), weight) for part, weight in weighed] if escapes else weighed
    else:
        segments = [(unescape(escaped), 1.0)] if escaped else []
    embeddings = []
    if "embedding:" in text:
        for part, _ in segments:
            for name in _EMBEDDING.findall(part):
                name = name.rstrip(",")
                if name and name not in embeddings:
                    embeddings.append(name)
    return segments, embeddings, notes
