"""Fuzz tests (hypothesis, fixed seed, bounded) for every prompt parser and for analyze_prompt.

Each test draws prompts from the syntax that matters to its parser - brackets, weights, colons,
escapes, BREAK/AND, braces, wildcards, non-finite numbers, invisible, bidi and surrogate
characters - and checks what must hold for any input: no exception other than the documented
PromptError family, finite bounded weights, strict-JSON output, and agreement with a plain
reference where one exists.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kubik_core.prompting import (MAX_WEIGHT, STYLES, PromptError, WildcardError, analyze_prompt,
                                  expand_dynamic, parse_prompt)
from kubik_core.prompting import syntax_a1111, syntax_comfyui
from kubik_core.prompting.dynamic import MAX_OUTPUT_CHARS

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

WEIGHT_TOKENS = [":1.5)", ":0.5)", ":-1)", ":1e309)", ":nan)", ":inf)", ":" + "9" * 40 + ")",
                 ":1.2.3)", ":abc)", ":)", "::", ":"]
BRACKET_TOKENS = ["(", ")", "[", "]", "\\(", "\\)", "\\[", "\\]", "\\", "\\\\", "((", "))"]
TEXT_TOKENS = ["a", "cat", " ", ", ", "\n", "\t", "1.2", "e5", "😀", "\u00a0"]
A1111_TOKENS = ["BREAK", " BREAK ", "AND", " AND ", " :0.5", "|", "[a:b:3]", "[a:b:0.5]",
                "[a:b:1e400]", "[x|y]", ":" + "9" * 30]
HOSTILE_CHARS = ["\x00", "\x07", "\x1b", "\u200b", "\u200d", "\ufeff", "\u202e", "\u2066",
                 "\ud800", "\udc80", "\U000e0041", "--ar 16:9", "--no x", "embedding:x"]
DYNAMIC_TOKENS = ["{", "}", "|", "$$", "2$$", "1-3$$", "999999999$$", "0.5::", "9" * 30 + "::",
                  " and $$", "__w__", "__loop__", "__deep/x__", "__missing__", "__../w__", "__",
                  "_", "{a|b}", "{2$$a|b|c}"]


def prompts(*token_lists: list[str], size: int = 40):
    tokens = [token for tokens in token_lists for token in tokens]
    return st.lists(st.one_of(st.sampled_from(tokens), st.text(max_size=3)),
                    max_size=size).map("".join)


def assert_weights_bounded(segments):
    for _, weight in segments:
        assert isinstance(weight, float) and math.isfinite(weight) and abs(weight) <= MAX_WEIGHT


# ---------------------------------------------------------------- ComfyUI syntax
@FUZZ
@given(prompts(WEIGHT_TOKENS, BRACKET_TOKENS, TEXT_TOKENS, HOSTILE_CHARS))
def test_fuzz_comfyui_syntax(text):
    segments, embeddings, notes = syntax_comfyui.parse(text)
    assert_weights_bounded(segments)
    assert all(isinstance(note, str) and len(note) < 400 for note in notes)
    assert len(notes) == len(set(notes))
    assert all(name for name in embeddings)
    if "(" not in text and ")" not in text:
        assert "".join(part for part, _ in segments) == text.replace("\\(", "(").replace("\\)", ")")


def _sd1_clip():
    root = os.environ.get("COMFYUI_DIR")
    if not root:
        pytest.skip("COMFYUI_DIR is not set: no ComfyUI checkout to compare with")
    sys.path.insert(0, root)
    try:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True
        from comfy import sd1_clip
    except Exception as exc:  # a checkout without its requirements
        pytest.skip(f"cannot import comfy.sd1_clip from {root}: {exc}")
    finally:
        sys.path.remove(root)
    return sd1_clip


@pytest.mark.slow
@FUZZ
@given(prompts([":1.5)", ":0.5)", ":abc)", ":", ":)"], ["(", ")", "\\(", "\\)"],
               ["a", " ", "b:"], size=30))
def test_fuzz_comfyui_syntax_agrees_with_comfyui(text):
    sd1_clip = _sd1_clip()
    expected = [(sd1_clip.unescape_important(t), w)
                for t, w in sd1_clip.token_weights(sd1_clip.escape_important(text), 1.0)]
    assume(all(abs(w) <= MAX_WEIGHT for _, w in expected))
    assert syntax_comfyui.parse(text)[0] == expected


# ---------------------------------------------------------------- A1111 syntax
def _reference_attention(text: str) -> list[list[tuple[str, float]]]:
    """The webui's attention pass, literally: every piece inside a bracket is multiplied when the
    bracket closes (quadratic, unclamped; the oracle for weigh())."""
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start, factor):
        for item in res[start:]:
            item[1] *= factor

    for match in syntax_a1111._ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token[0] == "\\":
            res.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(res))
        elif token == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            start = round_open.pop()
            try:
                factor = float(weight)
            except ValueError:
                res.append([":" + weight, 1.0])
                factor = 1.1
            multiply(start, factor)
        elif token == ")" and round_open:
            multiply(round_open.pop(), 1.1)
        elif token == "]" and square_open:
            multiply(square_open.pop(), 1 / 1.1)
        elif "BREAK" not in token:
            res.append([token, 1.0])
        else:
            for index, piece in enumerate(syntax_a1111._BREAK.split(token)):
                if index:
                    res.append(["BREAK", -1])
                res.append([piece, 1.0])
    for start in round_open:
        multiply(start, 1.1)
    for start in square_open:
        multiply(start, 1 / 1.1)
    chunks: list[list[tuple[str, float]]] = [[]]
    for piece, weight in res:
        if weight == -1 and piece == "BREAK":
            chunks.append([])
        elif piece:
            chunks[-1].append((piece, weight))
    return chunks


def _per_character(chunks):
    return [[(char, weight) for piece, weight in chunk for char in piece] for chunk in chunks]


@FUZZ
@given(prompts([":1.5)", ":0.5)", ":-1)", ":1.2.3)", ":"], ["(", ")", "[", "]", "\\(", "\\]", "\\"],
               ["a", " ", "BREAK", " BREAK "], size=30))
def test_fuzz_a1111_attention_agrees_with_the_webui_algorithm(text):
    expected = _reference_attention(text)
    assume(all(abs(w) <= MAX_WEIGHT for chunk in expected for _, w in chunk))
    got, wanted = _per_character(syntax_a1111.weigh(text)), _per_character(expected)
    assert [[char for char, _ in chunk] for chunk in got] == \
        [[char for char, _ in chunk] for chunk in wanted]
    for chunk, reference in zip(got, wanted):
        for (_, weight), (_, expected_weight) in zip(chunk, reference):
            assert math.isclose(weight, expected_weight, rel_tol=1e-9, abs_tol=1e-12)


@FUZZ
@given(prompts(WEIGHT_TOKENS, BRACKET_TOKENS, TEXT_TOKENS, A1111_TOKENS, HOSTILE_CHARS),
       st.integers(1, 200), st.integers(-5, 300))
def test_fuzz_a1111_syntax(text, steps, step):
    parsed = parse_prompt(text, "a1111", steps=steps, step=step)
    assert_weights_bounded(parsed.segments)
    assert all(math.isfinite(part.weight) and abs(part.weight) <= MAX_WEIGHT for part in parsed.parts)
    assert all(0 <= edit.at_step <= parsed.steps for edit in parsed.schedules)
    assert 1 <= parsed.step <= parsed.steps
    assert len(parsed.notes) == len(set(parsed.notes))


# ---------------------------------------------------------------- dynamic prompts and wildcards
@pytest.fixture(scope="module")
def wildcard_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wildcards")
    (folder / "w.txt").write_text("red\nblue\n{big|small} __w__\n# comment\n", encoding="utf-8")
    (folder / "loop.txt").write_text("x __loop__\n", encoding="utf-8")
    (folder / "deep").mkdir()
    (folder / "deep" / "x.txt").write_text("{2$$__w__|__deep/x__|z}\n", encoding="utf-8")
    return folder


@FUZZ
@given(text=prompts(DYNAMIC_TOKENS, TEXT_TOKENS, size=30), seed=st.integers(-2**70, 2**70))
def test_fuzz_dynamic_prompts_and_wildcards(wildcard_folder, text, seed):
    try:
        result = expand_dynamic(text, seed, wildcard_folder)
    except WildcardError as exc:
        message = str(exc)
        assert str(wildcard_folder) not in message and "\n" not in message
        with pytest.raises(WildcardError):  # the same seed fails the same way
            expand_dynamic(text, seed, wildcard_folder)
        return
    assert isinstance(result, str) and len(result) <= MAX_OUTPUT_CHARS
    assert result == expand_dynamic(text, seed, wildcard_folder)
    if "{" not in text and "__" not in text:
        assert result == text


# ---------------------------------------------------------------- the whole analysis
def _strict(analysis) -> dict:
    def refuse(word):
        raise AssertionError(f"{word} in the JSON")
    return json.loads(json.dumps(analysis.to_dict(), allow_nan=False), parse_constant=refuse)


@FUZZ
@given(text=st.one_of(
           prompts(WEIGHT_TOKENS, BRACKET_TOKENS, TEXT_TOKENS, A1111_TOKENS, HOSTILE_CHARS,
                   DYNAMIC_TOKENS),
           st.text(alphabet=st.characters(exclude_categories=()), max_size=60)),
       dialect=st.sampled_from(["comfyui", "a1111"]), seed=st.integers(-2**70, 2**70))
def test_fuzz_analyze(text, dialect, seed):
    try:
        analysis = analyze_prompt(text, dialect, seed)
    except PromptError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    data = _strict(analysis)
    assert_weights_bounded(analysis.segments)
    assert len(data["notes"]) <= 20
    assert data["style"] in (*STYLES, "unknown")
    assert all(0.0 <= value <= 1.0 for value in data["complexity"].values())
    for char in analysis.cleaned:
        assert not ("\ud800" <= char <= "\udfff" or "\u202a" <= char <= "\u202e"
                    or "\u2066" <= char <= "\u2069" or ord(char) < 32), repr(char)
