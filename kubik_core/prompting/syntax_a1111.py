"""AUTOMATIC1111's prompt syntax (stable-diffusion-webui modules/prompt_parser.py).

The webui reads a prompt in three passes, and so does this module:

1. ``AND`` splits the raw text into sub-prompts, each with an optional ``:weight`` at its end
   (composable diffusion);
2. each sub-prompt is parsed for ``[a:b:when]`` scheduling and ``[a|b]`` alternation and
   resolved to the plain text used at one sampling step (the webui uses a lark grammar; this is
   a hand-written recursive-descent parser for the same grammar: brackets that do not form a
   construct stay literal at the top level, a ``|`` outside ``[ ]`` makes the webui give up on
   scheduling for that sub-prompt, which is reproduced);
3. the step's text is weighed: ``(x)`` ×1.1, ``[x]`` ÷1.1, ``(x:w)`` ×w, nested brackets
   multiply, brackets left open apply up to the end, ``\\(`` escapes, ``BREAK`` starts a new
   75-token chunk.

The work grows linearly with the length of the prompt (at most MAX_NESTING times it in the
schedule pass), where the webui's own code is quadratic on unclosed brackets and on long
whitespace; and weights beyond +-MAX_WEIGHT are reported clamped, with a note.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .limits import clamp_weight, shorten

MAX_NESTING = 100

# Pass 1: the webui splits at AND and reads each sub-prompt's weight with the expression
# ^(\s*.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$ ; split_weight reads it the same way
# in one pass (that expression backtracks quadratically on long runs of whitespace).
_AND = re.compile(r"\bAND\b")
_AND_NUMBER = re.compile(r"[-+]?(?:\d+\.?|\d*\.\d+)")

# Pass 2: tokens of the scheduling grammar.
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+", re.S)
_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\]")

# Pass 3: the webui's attention tokens.
_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


@dataclass(frozen=True)
class Scheduled:
    """``[before:after:when]``: ``before`` up to step ``when``, ``after`` from then on."""

    before: tuple | None
    after: tuple
    when: float


@dataclass(frozen=True)
class Alternate:
    """``[a|b|c]``: option (step - 1) % n at each step."""

    options: tuple


class _Fail(Exception):
    """The text at this position is no construct of the grammar."""


class _TooDeep(Exception):
    """Brackets nest deeper than MAX_NESTING: the sub-prompt is used as written."""


class _ScheduleParser:
    def __init__(self, text: str):
        self.text = text
        self.depth = 0
        # Packrat memo: a bracket construct at a position parses the same way every time, so
        # text that makes the top level retry after a failure is parsed once, not per retry.
        self.memo: dict[int, tuple[list, int] | None] = {}

    def parse_top(self) -> list:
        """The ``start`` rule: prompts with stray ``[ ] ( ) :`` allowed between them."""
        text, pos, nodes = self.text, 0, []
        while pos < len(text):
            char = text[pos]
            if char in "([":
                try:
                    node, pos = self._bracket(pos)
                    nodes.extend(node)
                    continue
                except _Fail:
                    nodes.append(char)
                    pos += 1
            elif char in "]):":
                nodes.append(char)
                pos += 1
            else:
                match = _PLAIN.match(text, pos)
                if match is None:  # a "|" outside brackets, or a lone trailing backslash
                    raise _Fail
                nodes.append(match.group())
                pos = match.end()
        return nodes

    def _prompt(self, pos: int) -> tuple[list, int]:
        """The ``prompt`` rule: stops before ``: | ] )`` or at the end."""
        text, nodes = self.text, []
        while pos < len(text):
            char = text[pos]
            if char in "([":
                node, pos = self._bracket(pos)
                nodes.extend(node)
            elif char in ":|])":
                break
            else:
                match = _PLAIN.match(text, pos)
                if match is None:
                    raise _Fail
                nodes.append(match.group())
                pos = match.end()
        return nodes, pos

    def _expect(self, pos: int, char: str) -> int:
        if pos < len(self.text) and self.text[pos] == char:
            return pos + 1
        raise _Fail

    def _bracket(self, pos: int) -> tuple[list, int]:
        if pos in self.memo:
            known = self.memo[pos]
            if known is None:
                raise _Fail
            return known
        if self.depth >= MAX_NESTING:
            raise _TooDeep
        self.depth += 1
        try:
            result = self._round(pos) if self.text[pos] == "(" else self._square(pos)
        except _Fail:
            self.memo[pos] = None
            raise
        finally:
            self.depth -= 1
        self.memo[pos] = result
        return result

    def _round(self, pos: int) -> tuple[list, int]:
        inner, pos = self._prompt(pos + 1)
        if pos < len(self.text) and self.text[pos] == ":":
            weight, pos = self._prompt(pos + 1)
            pos = self._expect(pos, ")")
            return ["(", *inner, ":", *weight, ")"], pos
        pos = self._expect(pos, ")")
        return ["(", *inner, ")"], pos

    def _square(self, pos: int) -> tuple[list, int]:
        text = self.text
        first, pos = self._prompt(pos + 1)
        if pos >= len(text):
            raise _Fail
        char = text[pos]
        if char == "]":
            return ["[", *first, "]"], pos + 1
        if char == "|":
            options = [tuple(first)]
            while pos < len(text) and text[pos] == "|":
                option, pos = self._prompt(pos + 1)
                options.append(tuple(option))
            pos = self._expect(pos, "]")
            return [Alternate(tuple(options))], pos
        if char != ":":
            raise _Fail
        number = _NUMBER.match(text, pos + 1)
        if number is not None:
            return [Scheduled(None, tuple(first), float(number.group(1)))], number.end()
        second, pos = self._prompt(pos + 1)
        pos = self._expect(pos, ":")
        number = _NUMBER.match(text, pos)
        if number is None:
            raise _Fail
        return [Scheduled(tuple(first), tuple(second), float(number.group(1)))], number.end()


def parse_schedule(text: str) -> list | None:
    """The sub-prompt as a list of str / Scheduled / Alternate, or None if the webui would
    not parse it (then it uses the text as it is, at every step)."""
    try:
        return _ScheduleParser(text).parse_top()
    except (_Fail, _TooDeep, RecursionError):
        return None


def step_of(when: float, steps: int) -> int:
    """The last step of ``before``: fractions below 1 are of the total steps (webui rule).

    Numbers past either end (``[a:b:1e400]``, ``[a:b:-5]``) are held to 0..steps.
    """
    if when < 1:
        when *= steps
    return int(min(steps, max(0.0, when)))  # max() also turns NaN into 0


def resolve(nodes, step: int, steps: int) -> str:
    """The text a schedule tree stands for at ``step`` (1-based)."""
    out: list[str] = []
    stack = [iter(nodes)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif isinstance(node, str):
            out.append(node)
        elif isinstance(node, Scheduled):
            chosen = (node.before or ()) if step <= step_of(node.when, steps) else node.after
            stack.append(iter(chosen))
        else:
            stack.append(iter(node.options[(step - 1) % len(node.options)]))
    return "".join(out)


def walk(nodes):
    """Every Scheduled and Alternate in a tree, outermost first."""
    stack = [iter(nodes)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif isinstance(node, Scheduled):
            yield node
            if node.before:
                stack.append(iter(node.before))
            stack.append(iter(node.after))
        elif isinstance(node, Alternate):
            yield node
            for option in node.options:
                stack.append(iter(option))


def split_weight(sub: str) -> tuple[str, str | None] | None:
    """(text, weight as written or None) of one AND sub-prompt, exactly as the webui's
    expression (see _AND) matches it, or None where it does not match.

    The expression takes the leading whitespace, then the shortest run of the first line
    after which only ``:number`` and whitespace (or only whitespace) remain; as that rest
    may span lines but the run may not, a sub-prompt whose text goes on past its first line
    matches only when its last line ends in ``:number``.
    """
    length = len(sub)
    content = length - len(sub.lstrip())      # where the text proper starts
    line_end = sub.find("\n", content)
    if line_end < 0:
        line_end = length
    tail = len(sub.rstrip())                  # where the trailing whitespace starts
    colon = sub.rfind(":", 0, tail)
    if colon >= 0:
        number = sub[colon + 1:tail].lstrip()
        if _AND_NUMBER.fullmatch(number):
            cut = max(len(sub[:colon].rstrip()), content)
            if cut <= line_end:
                return sub[:cut], number
    cut = max(tail, content)
    return (sub[:cut], None) if cut <= line_end else None


def split_and(text: str, notes: list[str] | None = None) -> list[tuple[str, float]]:
    """Sub-prompts of ``a AND b :0.5`` with their weights (webui get_multicond_prompt_list)."""
    parts = []
    for sub in (_AND.split(text) if "AND" in text else (text,)):
        split = split_weight(sub)
        if split is None:
            parts.append((sub, 1.0))
        else:
            body, weight = split
            parts.append((body, 1.0 if weight is None else
                          clamp_weight(float(weight), notes, "the webui", weight)))
    return parts


def weigh(text: str, notes: list[str] | None = None) -> list[list[tuple[str, float]]]:
    """Attention weights of resolved text (webui parse_prompt_attention), one list per BREAK chunk.

    The webui returns ("BREAK", -1) markers inside one list; here each chunk is its own list.
    Where the webui would crash on a weight such as ``(x:1.2.3)``, the weight is kept as text.
    The webui multiplies every piece inside a bracket when the bracket closes (quadratic for
    many open brackets); here each bracket becomes a range of pieces and the products are
    taken in one sweep. Weights beyond +-MAX_WEIGHT are clamped with a note.
    """
    if not ("(" in text or "[" in text or ")" in text or "]" in text or "\\" in text
            or "BREAK" in text):
        return [[(text, 1.0)]] if text else [[]]
    pieces: list[str] = []
    markers: set[int] = set()    # indexes of BREAK markers (the webui's ("BREAK", -1))
    # (first piece, end piece, factor) of each bracket; unclosed ones reach the end
    round_ranges: list[tuple[int, int, float]] = []
    square_ranges: list[tuple[int, int, float]] = []
    round_open: list[int] = []
    square_open: list[int] = []
    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token[0] == "\\":
            pieces.append(token[1:])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            try:
                factor = clamp_weight(float(weight), notes, "the webui", weight)
            except ValueError:
                if notes is not None:
                    notes.append(f"weight {shorten(weight)!r} is not a number (the webui fails "
                                 "on it); kept as text")
                pieces.append(":" + weight)
                factor = 1.1
            round_ranges.append((round_open.pop(), len(pieces), factor))
        elif token == ")" and round_open:
            round_ranges.append((round_open.pop(), len(pieces), 1.1))
        elif token == "]" and square_open:
            square_ranges.append((square_open.pop(), len(pieces), 1 / 1.1))
        elif "BREAK" not in token:
            pieces.append(token)
        else:
            for index, piece in enumerate(_BREAK.split(token)):
                if index:
                    markers.add(len(pieces))
                    pieces.append("BREAK")
                pieces.append(piece)
    if notes is not None and (round_open or square_open):
        notes.append("a bracket is never closed: the webui applies it up to the end of the prompt")
    round_ranges += [(start, len(pieces), 1.1) for start in round_open]
    square_ranges += [(start, len(pieces), 1 / 1.1) for start in square_open]
    if not pieces:
        return [[]]
    rounds = _range_products(round_ranges, len(pieces), notes)
    squares = _range_products(square_ranges, len(pieces), notes)
    weights = [(-1.0 if index in markers else 1.0) * r * q
               for index, (r, q) in enumerate(zip(rounds, squares))]
    # Runs of equal weight are merged, as the webui does. The products here are taken in
    # another order than the webui's, so equal means equal up to rounding.
    merged: list[tuple[str, float]] = []
    run_start = 0
    for index in range(1, len(pieces) + 1):
        if index == len(pieces) or not math.isclose(weights[index], weights[run_start],
                                                    rel_tol=1e-14):
            merged.append(("".join(pieces[run_start:index]), weights[run_start]))
            run_start = index
    chunks: list[list[tuple[str, float]]] = [[]]
    for piece, weight in merged:
        if weight == -1 and piece == "BREAK":
            chunks.append([])
        elif piece:
            chunks[-1].append((piece, weight))
    return chunks


def _range_products(ranges: list[tuple[int, int, float]], count: int,
                    notes: list[str] | None) -> list[float]:
    """Per piece, the product of the factors of the ranges that cover it.

    The ranges of one bracket kind nest like the brackets (a stack opens and closes them), so
    one sweep with a stack of running products gives every piece its product.
    """
    products = [1.0] * count
    if not ranges:
        return products
    starting: dict[int, list[tuple[int, float]]] = {}
    for start, end, factor in ranges:
        if start < end:
            starting.setdefault(start, []).append((end, factor))
    stack: list[tuple[int, float]] = []       # (end, running product)
    for index in range(count):
        while stack and stack[-1][0] <= index:
            stack.pop()
        if index in starting:
            for end, factor in sorted(starting[index], key=lambda item: -item[0]):
                outer = stack[-1][1] if stack else 1.0
                stack.append((end, clamp_weight(outer * factor, notes, "the webui")))
        if stack:
            products[index] = stack[-1][1]
    return products
