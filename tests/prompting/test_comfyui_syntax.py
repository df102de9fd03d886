"""ComfyUI weighting: hand-derived expectations, and ComfyUI's own parser when a checkout is there."""
from __future__ import annotations

import os
import sys

import pytest

from kubik_core.prompting import parse_prompt
from kubik_core.prompting.syntax_comfyui import MAX_NESTING

CASES = [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat) sits", [("a ", 1.0), ("cat", 1.1), (" sits", 1.0)]),
    ("((cat))", [("cat", 1.1 * 1.1)]),
    ("(((cat)))", [("cat", 1.1 * 1.1 * 1.1)]),
    ("(cat:1.5)", [("cat", 1.5)]),
    # the explicit weight replaces the outer one (A1111 would give 1.65)
    ("((cat:1.5))", [("cat", 1.5)]),
    ("((a (b:0.5)) c)", [("a ", 1.1 * 1.1), ("b", 0.5), (" c", 1.1)]),
    ("(cat:abc)", [("cat:abc", 1.1)]),
    ("(x:1e1) (y:-2)", [("x", 10.0), (" ", 1.0), ("y", -2.0)]),
    ("(:1.5)", [(":1.5", 1.1)]),
    # last colon wins, even inside a nested group: no number after it -> x1.1
    ("(a:1.2 (b))", [("a:1.2 ", 1.1), ("b", 1.1 * 1.1)]),
    ("\\(literal\\) (y)", [("(literal) ", 1.0), ("y", 1.1)]),
    ("()", []),
    ("(a)(b)", [("a", 1.1), ("b", 1.1)]),
    # unclosed: rest literal at the outer weight
    ("a (b", [("a ", 1.0), ("(b", 1.0)]),
    ("a ((b) c", [("a ", 1.0), ("((b) c", 1.0)]),
    ("((a)", [("(a", 1.1)]),
    # a stray ")" drives the counter negative; brackets pair again once it is back at zero
    ("a) ((b)", [("a) (", 1.0), ("b", 1.1)]),
    ("x)(y)z)(((w", [("x)(y)z)((", 1.0), ("(w", 1.0)]),
    ("(a(b)c)d)e(f)", [("a", 1.1), ("b", 1.1 * 1.1), ("c", 1.1), ("d)e(f)", 1.0)]),
    # A1111-only syntax is plain text for ComfyUI
    ("[x] [a:b:5] [a|b] BREAK y AND z", [("[x] [a:b:5] [a|b] BREAK y AND z", 1.0)]),
    ("😀 (cat:1.2) 🐱", [("😀 ", 1.0), ("cat", 1.2), (" 🐱", 1.0)]),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_weights_match_hand_derivation(text, expected):
    got = parse_prompt(text, "comfyui").segments
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], abs=1e-12)


def test_notes_explain_unbalanced_and_bad_weights():
    assert any("never closed" in n for n in parse_prompt("a (b", "comfyui").notes)
    assert any("no matching '('" in n for n in parse_prompt("a) b", "comfyui").notes)
    assert any("'abc' is not a number" in n for n in parse_prompt("(x:abc)", "comfyui").notes)
    assert parse_prompt("(a) (b:1.2)", "comfyui").notes == []


def test_embeddings_are_listed_as_comfyui_splits_them():
    parsed = parse_prompt("embedding:easynegative, a cat\nembedding:bad_hands, (embedding:style:1.2)",
                          "comfyui")
    assert parsed.embeddings == ["easynegative", "bad_hands", "style"]  # a segment may start with one
    # "embedding:" inside a word is not an embedding for ComfyUI either
    assert parse_prompt("myembedding:x", "comfyui").embeddings == []


def test_deep_nesting_is_kept_as_text_beyond_the_limit():
    depth = MAX_NESTING + 20
    parsed = parse_prompt("(" * depth + "x" + ")" * depth, "comfyui")
    assert "x" in parsed.text
    assert any("nested deeper" in n for n in parsed.notes)


def _comfy_parser():
    root = os.environ.get("COMFYUI_DIR")
    if not root:
        pytest.skip("COMFYUI_DIR is not set: no ComfyUI checkout to compare with")
    sys.path.insert(0, root)
    try:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True  # sd1_clip imports model_management, which probes devices
        from comfy import sd1_clip
    except Exception as exc:  # a checkout without its requirements installed
        pytest.skip(f"cannot import comfy.sd1_clip from {root}: {exc}")
    finally:
        sys.path.remove(root)
    return sd1_clip


CORPUS = [text for text, _ in CASES] + [
    "masterpiece, (best quality:1.2), ((1girl)), solo, (long hair:0.8), [sitting], \\(smile\\)",
    "((((a)))) (b:1.3) ((c:0.7) d) (e (f (g:2) h) i)",
    "a photo of a (cat:1.2) and a ((dog)) in a ((garden:1.1), flowers:0.9)",
    ") ( ) ( ( ) ) ) ( x",
    "(a:1.5:2) (b::1) (c:) (d:1.)",
    "tab\tand\nnewline (x:1.1)",
    "(nested (colon:1.2) text:abc) end",
    "raw \0\1 and \0\2 markers (x:1.2)",   # ComfyUI unescapes even without a backslash
]


@pytest.mark.slow  # the first case imports torch and comfy
@pytest.mark.parametrize("text", CORPUS)
def test_segments_equal_comfyui_token_weights(text):
    sd1_clip = _comfy_parser()
    expected = [(sd1_clip.unescape_important(t), w)
                for t, w in sd1_clip.token_weights(sd1_clip.escape_important(text), 1.0)]
    assert parse_prompt(text, "comfyui").segments == expected


def test_flat_fast_path_agrees_with_the_general_parser():
    """Prompts whose groups are single and un-nested take weigh_flat; it must equal weigh."""
    import random

    from kubik_core.prompting.syntax_comfyui import _FLAT, weigh, weigh_flat

    rng = random.Random(3)
    alphabet = ["a", " ", ":", "1.2", "(", ")", "x", "abc", ",", "0", "e5", "-1", "inf"]
    checked = 0
    while checked < 5000:
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        if _FLAT.fullmatch(text):
            checked += 1
            notes_general, notes_flat = [], []
            assert weigh_flat(text, notes_flat) == weigh(text, notes_general), repr(text)
            assert notes_flat == notes_general, repr(text)
