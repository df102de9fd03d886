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

import random
import re
from collections.abc import Callable
from pathlib import Path

from .errors import WildcardError
from .wildcards import WildcardFiles

# Limits that keep a hostile prompt or wildcard file (one that includes itself, two that
# include each other, {N$$...} fan-out, braces nested thousands deep) from running long.
MAX_DEPTH = 16              # { } inside { }, or a wildcard inside a wildcard
MAX_OUTPUT_CHARS = 1_000_000
MAX_EXPANSIONS = 10_000     # options chosen plus wildcards looked up
MAX_WORK = 10_000_000       # characters and options read while expanding
MAX_PICK = 1_000_000_000    # {N$$...} counts above this are read as this (no list is longer)
MAX_OPTION_WEIGHT = 1e9     # {w::...} weights above this are read as this
_INTERRUPT_EVERY = 64       # expansions between checks of the caller's interrupt

_WILDCARD = re.compile(r"__([\w\-. /\\]+?)__")
_PICK = re.compile(r"^\s*(\d+)(?:\s*-\s*(\d+))?\s*\$\$(?:(.*?)\$\$)?", re.S)
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)::")
_BRACE = re.compile(r"[{}]")
_OPTION_MARK = re.compile(r"[{}|]")


def expand_dynamic(text: str, seed: int, wildcards_dir: str | Path | None = None,
                   check_interrupt: Callable[[], None] | None = None) -> str:
    """``text`` with every dynamic construct replaced by the choice ``seed`` makes.

    ``check_interrupt``, when given, is called now and then and may raise to stop the work
    (ComfyUI's Cancel). Raises WildcardError for a missing or escaping wildcard and for a
    prompt past one of the limits above.
    """
    if "{" not in text and "__" not in text:
        return text
    rng = random.Random(int(seed))
    files = WildcardFiles(Path(wildcards_dir).expanduser()) if wildcards_dir not in (None, "") else None
    return _Expander(rng, files, check_interrupt).expand(text, 0)


class _Expander:
    def __init__(self, rng: random.Random, files: WildcardFiles | None,
                 check_interrupt: Callable[[], None] | None):
        self.rng = rng
        self.files = files
        self.check_interrupt = check_interrupt
        self.expansions = 0
        self.work = 0

    def _spend(self, work: int, expansions: int = 0) -> None:
        """Count work done; refuse a prompt that goes past the limits."""
        self.work += work
        if self.work > MAX_WORK:
            raise WildcardError(f"dynamic prompt too large to expand: it reads more than "
                                f"{MAX_WORK:,} characters (a wildcard that includes itself "
                                "many times, or {N$$...} over a huge list?)")
        if expansions:
            before = self.expansions
            self.expansions += expansions
            if self.expansions > MAX_EXPANSIONS:
                raise WildcardError(f"dynamic prompt makes more than {MAX_EXPANSIONS:,} choices "
                                    "(wildcards that include each other many times?)")
            if self.check_interrupt is not None and \
                    before // _INTERRUPT_EVERY != self.expansions // _INTERRUPT_EVERY:
                self.check_interrupt()

    def expand(self, text: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise WildcardError(f"dynamic prompt nested deeper than {MAX_DEPTH} levels ({{ }} "
                                "inside { }, or wildcards inside wildcards: does one include "
                                "itself?)")
        wildcards = "__" in text
        if not wildcards and "{" not in text:
            return text
        self._spend(len(text) + 1)
        pairs = _brace_pairs(text)
        out: list[str] = []
        size = 0
        pos = 0
        # the next wildcard at or after pos, searched again only once pos has passed it, so
        # the text is scanned once however many braces come before it
        wild = _WILDCARD.search(text) if wildcards else None
        while pos < len(text):
            if wild is not None and wild.start() < pos:
                wild = _WILDCARD.search(text, pos)
            brace = text.find("{", pos)
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
                raise WildcardError(f"dynamic prompt grows past {MAX_OUTPUT_CHARS:,} characters")
        return "".join(out)

    def _choose(self, body: str, depth: int) -> str:
        self._spend(len(body) + 1)
        low = high = 1
        joiner = ", "
        pick = _PICK.match(body) if "$$" in body else None
        if pick:
            low = _count(pick.group(1))
            high = _count(pick.group(2)) if pick.group(2) else low
            if pick.group(3) is not None:
                joiner = pick.group(3)
            body = body[pick.end():]
        options, weights = [], []
        for option in _split_options(body):
            weight = _WEIGHT.match(option) if "::" in option else None
            if weight:
                weights.append(min(float(weight.group(1)), MAX_OPTION_WEIGHT))
                option = option[weight.end():]
            else:
                weights.append(1.0)
            options.append(option)
        rng = self.rng
        count = rng.randint(min(low, high), max(low, high)) if low != high else low
        count = max(0, min(count, len(options)))
        chosen = []
        uniform = all(weight == 1.0 for weight in weights)
        for _ in range(count):
            self._spend(len(options), expansions=1)
            draw = rng.random()
            if uniform:  # what _pick gives for equal weights, without the walk
                index = min(int(draw * len(options)), len(options) - 1)
                weights.pop()
            else:
                index = _pick(draw, weights)
            chosen.append(options.pop(index))
        return joiner.join(self.expand(option, depth + 1) for option in chosen)

    def _wildcard_line(self, name: str) -> str:
        self._spend(len(name) + 1, expansions=1)
        if self.files is None:
            raise WildcardError(f"wildcard __{name[:60]}__ used but no wildcards folder is set")
        lines = self.files.options(name)
        return lines[self.rng.randrange(len(lines))]


def _count(digits: str) -> int:
    """A {N$$...} count; Python refuses to read integers of thousands of digits."""
    return min(int(digits), MAX_PICK) if len(digits) <= 10 else MAX_PICK


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
