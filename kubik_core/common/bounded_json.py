"""JSON that a hostile writer controls: bounded depth, size and numbers, one clear error.

Python's ``json`` recurses once per nesting level (a 1,000-deep ``[[[[...`` raises RecursionError),
turns ``1e999`` into ``inf``, accepts the non-standard ``NaN`` / ``Infinity`` words and parses
integers of thousands of digits that later overflow ``float()``. ``loads`` refuses all of these
with a ``BoundedJSONError`` (a ValueError) whose message names what is wrong, so the caller can
record it as a problem of the file or answer a request with a 400.
"""
from __future__ import annotations

import json
import math
import re
from itertools import accumulate

MAX_DEPTH = 64
MAX_BYTES = 64 * 1024 * 1024
MAX_INT = 2 ** 64  # larger than any offset, count or seed a real file or request carries

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class BoundedJSONError(ValueError):
    """JSON refused for its shape (too deep, too large, a number out of range) or its syntax."""


def outside_strings(text: str) -> str:
    """``text`` without its JSON strings: what ``_STRING.sub("", text)`` gives, in linear time.

    re.sub tries the pattern again at every later quote once a string is left unterminated,
    which is quadratic (``'"' + '\\"' * n`` takes minutes at n = 100,000). A sentinel that
    closes any open string (a character, so that a trailing backslash escapes it, then a
    quote) keeps re.sub's single fast pass: when the sentinel's quote survives, no string was
    left open and the result is re.sub's. Otherwise (invalid JSON), the strings are removed up
    to the open one and the rest is kept as it is, as re.sub keeps it: that quote's string
    never closes, so every later quote is escaped inside it and no later string closes either.
    """
    closed = _STRING.sub("", text + '\x00"')
    if closed.endswith('"'):
        return closed[:-2]
    parts, pos = [], 0
    while (start := text.find('"', pos)) >= 0:
        match = _STRING.match(text, start)
        if match is None:
            break
        parts.append(text[pos:start])
        pos = match.end()
    parts.append(text[pos:])
    return "".join(parts)


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of ``text``, brackets inside strings not counted (linear)."""
    steps = (_STEP[b] for b in _BRACKETS.findall(outside_strings(text)))
    return max(accumulate(steps, initial=0))


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BoundedJSONError(f"number {text[:40]} is out of range (not a finite float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise BoundedJSONError(f"number {text[:40]}... has {len(text)} digits (too large)")
    value = int(text)
    if abs(value) > MAX_INT:
        raise BoundedJSONError(f"number {text} is too large (limit 2^64)")
    return value


def _no_constant(word: str):
    raise BoundedJSONError(f"{word} is not a JSON number (only finite numbers are accepted)")


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES):
    """Parse ``text`` as strict JSON within the bounds; raise BoundedJSONError otherwise."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            raise BoundedJSONError(f"JSON of {len(text)} bytes is too large (limit {max_bytes})")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BoundedJSONError(f"JSON is not valid UTF-8 (byte {exc.start})") from None
    elif len(text) > max_bytes:  # characters >= bytes/4; a cheap first bound
        raise BoundedJSONError(f"JSON of {len(text)} characters is too large (limit {max_bytes})")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise BoundedJSONError(f"JSON is nested {depth} levels deep (limit {max_depth})")
    try:
        return json.loads(text, parse_float=_finite_float, parse_int=_bounded_int,
                          parse_constant=_no_constant)
    except BoundedJSONError:
        raise
    except RecursionError:  # unbalanced brackets can fool the depth count; never a traceback
        raise BoundedJSONError(f"JSON is nested too deeply (limit {max_depth})") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BoundedJSONError(f"not valid JSON ({exc})") from None
