"""Dynamic prompts resolved from a seed: ``{a|b}``, ``{2$$a|b|c}``, ``{0.5::a|b}``, ``__wildcard__``.

The syntax follows the dynamicprompts library (and ComfyUI-Impact-Pack's wildcards):

* ``{a|b|c}`` one option; options may nest ``{a|{b|c}}``;
* ``{2$$a|b|c}`` two different options joined by ", "; ``{1-3$$a|b|c}`` one to three;
  ``{2$$ and $$a|b|c}`` joined by " and ";
* ``{0.5::a|2::b}`` weighted options (weight 1 when none is given);
* ``__name__`` / ``__dir/name__`` one line of ``<wildcards folder>/name.txt`` (blank lines and
  lines starting with ``#`` are skipped); lines may hold more dynamic syntax.

Choices come from ``random.Random(seed)`` consumed left to right - one ``random()`` draw per
option picked (plus one ``randint`` for a ``1-3$$`` range) - so one seed gives the same text on
every machine and Python version. An unclosed ``{`` stays literal text.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

from .errors import WildcardError

MAX_DEPTH = 16          # nested wildcards / braces before we refuse (a wildcard naming itself)
MAX_OUTPUT_CHARS = 1_000_000

_WILDCARD = re.compile(r"__([\w\-. /\\]+?)__")
_PICK = re.compile(r"^\s*(\d+)(?:\s*-\s*(\d+))?\s*\$\$(?:(.*?)\$\$)?", re.S)
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)::")
_BRACE = re.compile(r"[{}]")
_OPTION_MARK = re.compile(r"[{}|]")

_file_cache: dict[str, tuple[int, list[str]]] = {}


def expand_dynamic(text: str, seed: int, wildcards_dir: str | Path | None = None) -> str:
    """``text`` with every dynamic construct replaced by the choice ``seed`` makes."""
    if "{" not in text and "__" not in text:
        return text
    rng = random.Random(int(seed))
    folder = Path(wildcards_dir).expanduser() if wildcards_dir not in (None, "") else None
    return _Expander(rng, folder).expand(text, 0)


class _Expander:
    def __init__(self, rng: random.Random, folder: Path | None):
        self.rng = rng
        self.folder = folder

    def expand(self, text: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise WildcardError(f"dynamic prompt nested deeper than {MAX_DEPTH} levels "
                                "(does a wildcard include itself?)")
        wildcards = "__" in text
        if not wildcards and "{" not in text:
            return text
        pairs = _brace_pairs(text)
        out: list[str] = []
        size = 0
        pos = 0
        while pos < len(text):
            brace = text.find("{", pos)
            wild = _WILDCARD.search(text, pos) if wildcards else None
            wild_at = wild.start() if wild else -1
            if brace < 0 and wild_at < 0:
                out.append(text[pos:])
                break
            if brace >= 0 and (wild_at < 0 or brace < wild_at):
                close = pairs.get(brace, -1)
                if close < 0:  # unclosed: literal
                    out.append(text[pos:brace + 1])
                    pos = brace + 1
                    continue
                piece = text[pos:brace] + self._choose(text[brace + 1:close], depth)
                pos = close + 1
            else:
                piece = text[pos:wild_at] + self.expand(self._wildcard_line(wild.group(1)), depth + 1)
                pos = wild.end()
            out.append(piece)
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise WildcardError("dynamic prompt grows past a million characters")
        return "".join(out)

    def _choose(self, body: str, depth: int) -> str:
        low = high = 1
        joiner = ", "
        pick = _PICK.match(body) if "$$" in body else None
        if pick:
            low = int(pick.group(1))
            high = int(pick.group(2)) if pick.group(2) else low
            if pick.group(3) is not None:
                joiner = pick.group(3)
            body = body[pick.end():]
        options, weights = [], []
        for option in _split_options(body):
            weight = _WEIGHT.match(option) if "::" in option else None
            if weight:
                weights.append(float(weight.group(1)))
                option = option[weight.end():]
            else:
                weights.append(1.0)
            options.append(option)
        rng = self.rng
        count = rng.randint(min(low, high), max(low, high)) if low != high else low
        count = max(0, min(count, len(options)))
        chosen = []
        for _ in range(count):
            chosen.append(options.pop(_pick(rng.random(), weights)))
        return joiner.join(self.expand(option, depth + 1) for option in chosen)

    def _wildcard_line(self, name: str) -> str:
        if self.folder is None:
            raise WildcardError(f"wildcard __{name}__ used but no wildcards folder is set")
        root = self.folder.resolve()
        path = (root / f"{name.strip()}.txt").resolve()
        if os.path.isabs(name) or not path.is_relative_to(root):
            raise WildcardError(f"wildcard __{name}__ points outside the wildcards folder {root}")
        lines = _read_wildcard(path)
        if lines is None:
            raise WildcardError(f"wildcard __{name}__ not found: no file {path}")
        if not lines:
            raise WildcardError(f"wildcard file {path} has no options (only blank or # lines)")
        return lines[self.rng.randrange(len(lines))]


def _read_wildcard(path: Path) -> list[str] | None:
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    key = str(path)
    cached = _file_cache.get(key)
    if cached and cached[0] == stamp:
        return cached[1]
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    _file_cache[key] = (stamp, lines)
    return lines


def _pick(draw: float, weights: list[float]) -> int:
    """Index chosen by ``draw`` in [0, 1) with probability proportional to its weight (uniform
    when no weight is positive); the chosen weight is removed from ``weights``."""
    total = sum(weights)
    if total <= 0:
        index = min(int(draw * len(weights)), len(weights) - 1)
    else:
        target = draw * total
        index = len(weights) - 1
        for position, weight in enumerate(weights):
            target -= weight
            if target < 0:
                index = position
                break
    weights.pop(index)
    return index


def _brace_pairs(text: str) -> dict[int, int]:
    """Position of each ``{`` -> its closing ``}``, in one pass (unclosed ones are absent)."""
    pairs: dict[int, int] = {}
    opened: list[int] = []
    for match in _BRACE.finditer(text):
        if match.group() == "{":
            opened.append(match.start())
        elif opened:
            pairs[opened.pop()] = match.start()
    return pairs


def _split_options(body: str) -> list[str]:
    """Split at the ``|`` that are not inside nested braces."""
    if "{" not in body:
        return body.split("|")
    options, level, start = [], 0, 0
    for match in _OPTION_MARK.finditer(body):
        char, index = match.group(), match.start()
        if char == "{":
            level += 1
        elif char == "}":
            level -= 1
        elif level == 0:
            options.append(body[start:index])
            start = index + 1
    options.append(body[start:])
    return options
