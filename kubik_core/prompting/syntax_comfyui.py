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
character, brackets are paired once (linear in the length, whatever the depth), and nesting
deeper than MAX_NESTING is kept as literal text (ComfyUI itself hits Python's recursion limit
near 1000 levels). Unlike ComfyUI, weights beyond +-MAX_WEIGHT (``(x:inf)``, ``(x:nan)``, deep
nesting) are reported clamped, with a note, so that the analysis holds finite numbers only.
"""
from __future__ import annotations

import re

from .limits import clamp_weight, shorten

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


def _closing_brackets(text: str, lo: int, hi: int, closes: dict[int, int]) -> None:
    """Record the ``)`` that pairs with each ``(`` in text[lo:hi] (innermost first).

    Inside a group ComfyUI's counter never drops below zero, so a ``(`` closes at this ``)``
    in every sub-range that holds both; one that pairs only beyond a sub-range (or never) is
    left open there.
    """
    opened: list[int] = []
    for match in _BRACKET.finditer(text, lo, hi):
        if text[match.start()] == "(":
            opened.append(match.start())
        elif opened:
            closes[opened.pop()] = match.start()


def _group_weight(escaped: str, lo: int, hi: int, current: float,
                  notes: list[str] | None) -> tuple[float, int]:
    """(weight, end of the text) of the group whose inside is escaped[lo:hi], as ComfyUI reads
    it: the number after the last ``:`` replaces the weight, else the outer weight x1.1."""
    weight = current * 1.1
    colon = escaped.rfind(":", lo, hi)
    if colon > lo:
        written = escaped[colon + 1:hi]
        value = _parse_float(written)
        if value is not None:
            return clamp_weight(value, notes, "ComfyUI", written), colon
        if notes is not None:
            notes.append(f"weight {shorten(written)!r} is not a number: "
                         "ComfyUI keeps it as text at x1.1")
    return clamp_weight(weight, notes, "ComfyUI"), hi


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def weigh(escaped: str, notes: list[str] | None = None) -> list[tuple[str, float]]:
    """Weighted segments of an already escaped text (sd1_clip.token_weights), still escaped.

    ComfyUI re-splits the inside of every group at each nesting level; here the brackets are
    paired once, so the work grows with the length of the text, not with length x depth.
    """
    out: list[tuple[str, float]] = []
    balance = [0, 0]
    closes: dict[int, int] = {}
    too_deep = False
    # Work stack, pushed in reverse so segments come out in text order: ("text", lo, hi, weight)
    # is literal; ("group", lo, hi, weight, depth) is the inside of a ( ) group at that depth.
    stack: list[tuple] = []
    for start, end in reversed(_items(escaped, 0, len(escaped), balance)):
        if end - start >= 2 and escaped[start] == "(" and escaped[end - 1] == ")":
            _closing_brackets(escaped, start, end, closes)
            stack.append(("group", start + 1, end - 1, 1.0, 0))
        else:
            stack.append(("text", start, end, 1.0))
    while stack:
        item = stack.pop()
        if item[0] == "text":
            out.append((escaped[item[1]:item[2]], item[3]))
            continue
        _, lo, hi, current, depth = item
        if depth >= MAX_NESTING:
            too_deep = True
            out.append((escaped[lo:hi], current))
            continue
        weight, hi = _group_weight(escaped, lo, hi, current, notes)
        # the children of a balanced inside: text runs and the groups between them
        pending: list[tuple] = []
        pos = lo
        while pos < hi:
            opening = escaped.find("(", pos, hi)
            if opening < 0:
                pending.append(("text", pos, hi, weight))
                break
            if opening > pos:
                pending.append(("text", pos, opening, weight))
            closing = closes.get(opening, hi)
            if closing < hi:
                pending.append(("group", opening + 1, closing, weight, depth + 1))
                pos = closing + 1
                continue
            # never closed inside this group: ComfyUI keeps the rest as one item, a group
            # again when it happens to end with ")"
            if hi - opening >= 2 and escaped[hi - 1] == ")":
                pending.append(("group", opening + 1, hi - 1, weight, depth + 1))
            else:
                pending.append(("text", opening, hi, weight))
            break
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
        if inner:
            weight, end = _group_weight(inner, 0, len(inner), 1.0, notes)
            out.append((inner[:end], weight))
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
    return segments, embeddings, list(dict.fromkeys(notes))
