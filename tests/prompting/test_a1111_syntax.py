"""AUTOMATIC1111 syntax: attention weights, scheduling, alternation, BREAK and AND.

Expectations are the webui's own doctests (modules/prompt_parser.py) and hand derivations.
"""
from __future__ import annotations

import pytest

from kubik_core.prompting import parse_prompt
from kubik_core.prompting.syntax_a1111 import parse_schedule, resolve, weigh


def _flat(text):
    return [seg for chunk in weigh(text) for seg in chunk]


@pytest.mark.parametrize("text,expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * 1.1 * 1.1), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
      ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
    ("[x]", [("x", 1 / 1.1)]),
    ("[[x]]", [("x", 1 / 1.1 / 1.1)]),
    ("((x:1.5))", [("x", 1.5 * 1.1)]),        # ComfyUI would give 1.5
    ("[unclosed", [("unclosed", 1 / 1.1)]),
    ("(x:abc)", [("x", 1.1), (":", 1.1), ("abc", 1.1)]),  # not a weight: merged below
    ("😀 (cat) 🐱", [("😀 ", 1.0), ("cat", 1.1), (" 🐱", 1.0)]),
])
def test_attention_weights(text, expected):
    got = _flat(text)
    merged = []
    for piece, weight in expected:  # the webui merges runs of equal weight
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece, weight)
        else:
            merged.append((piece, weight))
    assert [t for t, _ in got] == [t for t, _ in merged]
    assert [w for _, w in got] == pytest.approx([w for _, w in merged], abs=1e-12)


def test_weight_the_webui_cannot_read_is_kept_as_text_with_a_note():
    notes = []
    chunks = weigh("x (y:1.2.3) z", notes)
    assert chunks == [[("x ", 1.0), ("y:1.2.3", pytest.approx(1.1)), (" z", 1.0)]]
    assert notes and "1.2.3" in notes[0]


def _schedule(text, steps=10):
    tree = parse_schedule(text)
    return None if tree is None else [resolve(tree, step, steps) for step in range(1, steps + 1)]


@pytest.mark.parametrize("text,changes", [
    # webui doctest "g(p)" lists [end_step, text]; expand them to every step
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(s, "a" if s % 2 else "(b:1.1)") for s in range(1, 11)]),
    ("[a:b:0.25]", [(2, "a"), (10, "b")]),   # 0.25 * 10 steps = step 2 (int)
    ("[a:b:99]", [(10, "a")]),               # past the last step: clamped
])
def test_schedules_match_the_webui(text, changes):
    expected, start = [], 1
    for end, resolved in changes:
        expected += [resolved] * (end - start + 1)
        start = end + 1
    assert _schedule(text) == expected


def test_pipe_outside_brackets_makes_the_webui_skip_scheduling():
    assert parse_schedule("a | b [c:d:2]") is None
    parsed = parse_prompt("a | b [c:d:2]", "a1111")
    assert parsed.schedules == []
    assert parsed.text == "a | b c:d:2"  # [ ] then weigh the text as written
    assert any("cannot read" in note for note in parsed.notes)


def test_parsed_prompt_exposes_schedule_alternation_break_and():
    parsed = parse_prompt("a [red|blue] car [day:night:0.5] BREAK (rain:1.2) AND a dog :0.6",
                          "a1111", steps=20, step=1)
    assert [(p.weight) for p in parsed.parts] == [1.0, 0.6]
    assert parsed.breaks == 1
    assert [(s.before, s.after, s.at_step) for s in parsed.schedules] == [("day", "night", 10)]
    assert parsed.alternations == [["red", "blue"]]
    assert parsed.parts[0].chunks == [[("a red car day", 1.0)], [("rain", 1.2)]]
    assert parsed.segments == [("a red car day", 1.0), ("rain", 1.2), (" a dog", 1.0)]
    late = parse_prompt("a [red|blue] car [day:night:0.5]", "a1111", steps=20, step=12)
    assert late.segments == [("a blue car night", 1.0)]


def test_and_weights_follow_the_webui_expression():
    parsed = parse_prompt("cat AND dog:1.5 AND bird : -0.5 AND ANDROID", "a1111")
    assert [(p.text, p.weight) for p in parsed.parts] == [
        ("cat", 1.0), (" dog", 1.5), (" bird", -0.5), (" ANDROID", 1.0)]


def test_comfyui_treats_a1111_syntax_as_text_and_default_step_is_first():
    assert parse_prompt("[a:b:5]", "a1111").segments == [("a", 1.0)]
    assert parse_prompt("[a:b:5]", "comfyui").segments == [("[a:b:5]", 1.0)]


def test_one_pass_and_weight_split_agrees_with_the_webui_expression():
    """split_weight reads the AND weights in one pass; it must read them as the webui's regex
    does (which backtracks quadratically on long whitespace)."""
    import random
    import re

    from kubik_core.prompting.syntax_a1111 import split_weight

    # modules/prompt_parser.py of the webui version this module follows
    webui_weight = re.compile(r"^(\s*.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
    rng = random.Random(1)
    alphabet = ["a", " ", ":", "1", ".", "-", "+", "x", "5", "  ", "\t", "\n", "\u00a0", "\u0663"]
    for _ in range(30000):
        sub = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        match = webui_weight.search(sub)
        assert split_weight(sub) == (match.groups() if match else None), repr(sub)


def test_and_weights_beyond_the_limit_are_clamped_with_a_note():
    parsed = parse_prompt("cat AND dog :-" + "9" * 400 + " AND bird: 99999", "a1111")
    assert [part.weight for part in parsed.parts] == [1.0, -100.0, 100.0]
    notes = " ".join(parsed.notes)
    assert "weight '-99999999999999999999...' is not finite: analysed as -100" in notes
    assert "weight '99999' is beyond +-100: analysed as 100" in notes


def test_pathological_brackets_are_parsed_in_bounded_time_and_noted():
    from kubik_core.prompting.syntax_a1111 import MAX_NESTING

    deep = "[a:" * (MAX_NESTING + 5) + "b"
    parsed = parse_prompt(deep, "a1111")
    assert parsed.schedules == [] and any("cannot read" in n for n in parsed.notes)
    # many near-misses ("[a:b]" is no schedule: b is not a number) stay literal, and the
    # real schedules among them still count
    many = "[x] [a:b] [c:d:3] " * 2000
    tree = parse_schedule(many)
    assert resolve(tree, 1, 10).startswith("[x] [a:b] c [x] [a:b] c ")
    assert resolve(tree, 5, 10).startswith("[x] [a:b] d [x] [a:b] d")
