"""Hostile prompts: each case gives one clear error or a recorded note, never a traceback or a hang.

Covers the prompt analysis core (both dialects), the Kubik Prompt Analyzer node and every path
of ``kubik analyze`` (arguments, standard input, --json). Every analysis is checked to be strict
JSON (no NaN or Infinity), because scripts read ``kubik analyze --json``.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest

from kubik_core.cli import main as kubik_main
from kubik_core.prompting import (MAX_PROMPT_CHARS, EmptyPromptError, PromptError, analyze_prompt,
                                  parse_prompt)
from kubik_core.prompting import syntax_comfyui

REPO = Path(__file__).resolve().parents[2]
NODE_DEFAULTS = dict(dialect="comfyui", seed=0, wildcards_folder="", use_ollama=False,
                     ollama_url="http://127.0.0.1:11434", ollama_model="llama3.2",
                     ollama_timeout=10.0)


def strict_json(analysis) -> dict:
    """The analysis as kubik analyze --json writes it, read back by a strict JSON reader."""
    def refuse(word):
        raise AssertionError(f"{word} in the JSON")
    return json.loads(json.dumps(analysis.to_dict(), allow_nan=False), parse_constant=refuse)


def clamp_note(written: str, problem: str, value: str, encoder: str = "ComfyUI") -> str:
    return (f"weight {written!r} {problem}: analysed as {value} ({encoder} would use it as is, "
            "which ruins the image; write a weight such as 1.2)")


NESTED_NOTE = ("the weight of nested brackets is beyond +-100: analysed as 100 ({} would use it as "
               "is, which ruins the image; write a weight such as 1.2)")


# ---------------------------------------------------------------- weights: clamped, noted, finite
@pytest.mark.parametrize("prompt,dialect,segment,note", [
    ("(cat:nan)", "comfyui", ("cat", 1.0), clamp_note("nan", "is not finite", "1")),
    ("(cat:inf)", "comfyui", ("cat", 100.0), clamp_note("inf", "is not finite", "100")),
    ("(cat:-inf)", "comfyui", ("cat", -100.0), clamp_note("-inf", "is not finite", "-100")),
    ("(cat:1e309)", "comfyui", ("cat", 100.0), clamp_note("1e309", "is not finite", "100")),
    ("(cat:1e5)", "comfyui", ("cat", 100.0), clamp_note("1e5", "is beyond +-100", "100")),
    ("a (b (cat:Infinity))", "comfyui", ("cat", 100.0),
     clamp_note("Infinity", "is not finite", "100")),
    ("(cat:" + "9" * 400 + ")", "a1111", ("cat", 100.0),
     clamp_note("9" * 21 + "...", "is not finite", "100", "the webui")),
    ("(" * 60 + "cat" + ")" * 60, "comfyui", ("cat", 100.0), NESTED_NOTE.format("ComfyUI")),
    ("(" * 60 + "cat" + ")" * 60, "a1111", ("cat", 100.0), NESTED_NOTE.format("the webui")),
    ("(" * 3000 + "cat", "a1111", ("cat", 100.0), NESTED_NOTE.format("the webui")),
])
def test_extreme_weights_are_clamped_with_a_note_and_stay_strict_json(prompt, dialect, segment,
                                                                      note):
    analysis = analyze_prompt(prompt, dialect)
    assert segment in analysis.segments
    assert note in analysis.notes
    data = strict_json(analysis)
    assert all(math.isfinite(weight) and abs(weight) <= 100 for _, weight in data["segments"])


def test_schedule_at_an_overflowing_step_is_read_not_raised():
    """[a:b:1e400] raised OverflowError (int of an infinite step)."""
    parsed = parse_prompt("a photo of a [cat:dog:1e400], [red:blue:-1e400]", "a1111")
    assert [(s.before, s.after, s.at_step) for s in parsed.schedules] == \
        [("cat", "dog", 20), ("red", "blue", 0)]
    assert parsed.text == "a photo of a cat, blue"
    strict_json(analyze_prompt("a photo of a [cat:dog:1e400]", "a1111"))


def test_kubik_analyze_json_is_strict_for_non_finite_weights(capsys):
    """kubik analyze --json printed bare NaN and Infinity for these weights."""
    assert kubik_main(["analyze", "--json", "(x:nan), (y:inf), (z:1e309), [a:b:1e400]"]) == 0
    printed = capsys.readouterr().out

    def refuse(word):
        raise AssertionError(f"{word} in the output")
    data = json.loads(printed, parse_constant=refuse)
    weights = {text: weight for text, weight in data["segments"]}
    assert (weights["x"], weights["y"], weights["z"]) == (1.0, 100.0, 100.0)
    assert clamp_note("nan", "is not finite", "1") in data["notes"]
    assert clamp_note("1e309", "is not finite", "100") in data["notes"]


def test_and_weights_and_bad_weights_keep_the_notes_short():
    analysis = analyze_prompt("a cat AND a dog :" + "9" * 400, "a1111")
    assert [part["weight"] for part in strict_json(analysis)["structure"]["and_parts"]] == \
        [1.0, 100.0]
    long_word = "(cat:" + "x" * 5_000 + ")"
    notes = analyze_prompt(long_word).notes
    assert "weight 'xxxxxxxxxxxxxxxxxxxxx...' is not a number: ComfyUI keeps it as text at x1.1" \
        in notes
    assert max(len(note) for note in notes) < 300


def test_many_different_problems_are_summed_up_after_twenty_notes():
    analysis = analyze_prompt(" ".join(f"(w{i}:bad{i})" for i in range(60)))
    assert len(analysis.notes) == 20
    assert analysis.notes[-1] == "... and 41 more notes"


# ---------------------------------------------------------------- invisible and bidi characters
@pytest.mark.parametrize("prompt", [
    "\u200b", "\u200b\u200c\u200d", "\ufeff \u2060 , ( ) \u200b", "\u00ad\u034f\u180e",
    "\u3164\u115f\uffa0\u2800", "\ufe0f\U000e0041\U000e0101", "\u200e\u200f\u061c",
])
def test_a_prompt_of_invisible_characters_is_empty(prompt):
    with pytest.raises(EmptyPromptError) as caught:
        analyze_prompt(prompt)
    assert str(caught.value) == ("prompt is empty (it holds only invisible characters): "
                                 "write what the image should show")


@pytest.mark.parametrize("prompt", ["", "   ", " , () [] {} | : \\ ", "\x00\x07\x1b", "\u202e\u2066"])
def test_a_prompt_without_text_is_empty(prompt):
    with pytest.raises(EmptyPromptError, match="^prompt is empty: write what the image should show$"):
        analyze_prompt(prompt)


def test_bidi_controls_are_removed_and_noted():
    analysis = analyze_prompt("a cat\u202e in a \u2066red\u2069 hat\u202a\u202b\u202c\u202d\u2067\u2068")
    assert analysis.cleaned == "a cat in a red hat"
    assert analysis.notes == ["removed 9 bidirectional control character(s) (U+202A-U+202E, "
                              "U+2066-U+2069: they reorder how text is shown) from the prompt"]
    assert "cat" in analysis.concepts["subject"]


def test_zero_width_joiners_inside_text_are_kept():
    analysis = analyze_prompt("a family 👨\u200d👩\u200d👧 at the beach")
    assert "👨\u200d👩\u200d👧" in analysis.cleaned and analysis.notes == []


def test_lone_surrogates_are_removed_and_noted():
    analysis = analyze_prompt("a cat\udc80 on a mat\ud800")
    assert analysis.cleaned == "a cat on a mat"
    assert analysis.notes == ["removed 2 invalid character(s) (lone surrogates, left from text "
                              "that was not UTF-8) from the prompt"]
    strict_json(analysis)


# ---------------------------------------------------------------- size and types
def test_a_prompt_past_the_limit_is_refused():
    with pytest.raises(PromptError) as caught:
        analyze_prompt("a" * (MAX_PROMPT_CHARS + 1))
    assert str(caught.value) == "prompt has 1,000,001 characters; the limit is 1,000,000"


@pytest.mark.parametrize("seed,message", [
    ("x", "seed must be a whole number, got 'x'"),
    (float("nan"), "seed must be a whole number, got nan"),
    (None, "seed must be a whole number, got None"),
])
def test_a_seed_that_is_no_number_is_refused(seed, message):
    with pytest.raises(PromptError) as caught:
        analyze_prompt("a cat", seed=seed)
    assert str(caught.value) == message


def test_a_huge_midjourney_tail_is_noted_briefly():
    analysis = analyze_prompt("a cat --ar " + "9" * 100_000 + " " + " ".join(
        f"--p{i} x" for i in range(20)))
    assert analysis.cleaned == "a cat"
    note = analysis.notes[0]
    assert note.startswith(f"Midjourney parameters (--ar {'9' * 37}... --p0 x --p1 x")
    assert " --p6 x ...) are not Stable Diffusion syntax" in note
    assert len(note) < 400


# ---------------------------------------------------------------- linear time (no hang)
HUGE = 200_000


def _repeat(unit: str) -> str:
    return unit * (HUGE // len(unit))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", [
    *(_repeat(unit) for unit in ("(", "[", "(a", "[a", "[a:", "[a:b:", "((a:", "[(a", "(a:b)[",
                                 "[a|")),
    "a:" + " " * HUGE + "x",                  # the AND-weight regex backtracked on whitespace
    "\n" * HUGE + "x\ny", _repeat(" \n") + "x\ny",
])
def test_a1111_parser_is_linear_on_unclosed_brackets(text):
    """parse_prompt took more than a minute on 100k characters of '(a' (quadratic)."""
    parsed = parse_prompt(text, "a1111")
    assert all(math.isfinite(weight) for _, weight in parsed.segments)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", [
    "(" * HUGE + "x" + ")" * HUGE, "(x" * (HUGE // 2) + ")" * (HUGE // 2), "((a)" * (HUGE // 4),
    ")(" * (HUGE // 2), "((a:1):2)b)" * (HUGE // 11),
])
def test_comfyui_parser_is_linear_in_deep_nesting(text):
    """ComfyUI's parser re-split each group at every level (7 s for 100k nested brackets)."""
    segments, _, notes = syntax_comfyui.parse(text)
    assert all(math.isfinite(weight) and abs(weight) <= 100 for _, weight in segments)
    assert len(notes) == len(set(notes))


@pytest.mark.timeout(10)
def test_analyze_of_a_megabyte_of_brackets_finishes():
    for dialect in ("comfyui", "a1111"):
        strict_json(analyze_prompt("(a:1.2)[b(" * (MAX_PROMPT_CHARS // 10), dialect))


# ---------------------------------------------------------------- the node
@pytest.mark.parametrize("changes,message", [
    ({"prompt": "\u200b\u200b"}, "prompt: the prompt is empty (nothing visible once whitespace, "
                                 "control and zero-width characters are removed); type what the "
                                 "image should show"),
    ({"prompt": ["a", "cat"]}, "prompt: prompt must be text, got list"),
    ({"prompt": "a cat", "wildcards_folder": 7}, "wildcards_folder: expected text, got int"),
    ({"prompt": "a cat", "ollama_url": None}, "ollama_url: expected text, got NoneType"),
    ({"prompt": "a cat", "seed": "x"}, "seed: expected a whole number, got 'x'"),
    ({"prompt": "a cat", "use_ollama": True, "ollama_url": "http://192.168.1.10:11434"},
     "ollama_url: ollama url host '192.168.1.10' is not this machine: Kubik only talks to an "
     "Ollama on 127.0.0.1, ::1 or localhost unless the environment variable KUBIK_OLLAMA_HOSTS "
     "lists the host (comma-separated names or addresses, or * for any host) where ComfyUI or "
     "kubik runs"),
    ({"prompt": "a cat", "use_ollama": True, "ollama_timeout": float("nan")},
     "ollama_timeout: ollama timeout must be a number of seconds above 0 and at most 600"),
    ({"prompt": "a" * (MAX_PROMPT_CHARS + 1)},
     "prompt: prompt has 1,000,001 characters; the limit is 1,000,000"),
])
def test_node_errors_name_the_input(run_node, monkeypatch, changes, message):
    monkeypatch.delenv("KUBIK_OLLAMA_HOSTS", raising=False)
    with pytest.raises(ValueError) as caught:
        run_node("KubikPromptAnalyzer", **{**NODE_DEFAULTS, **changes})
    assert str(caught.value) == message


def test_node_stops_a_long_expansion_on_comfyuis_cancel(run_node, monkeypatch):
    """The expansion calls ComfyUI's interrupt check, as the other nodes do."""
    class Interrupted(Exception):
        pass

    calls = []

    def throw_exception_if_processing_interrupted():
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted

    management = types.ModuleType("comfy.model_management")
    management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", management)
    with pytest.raises(Interrupted):
        run_node("KubikPromptAnalyzer", prompt="{a|b}" * 1000, **NODE_DEFAULTS)
    assert len(calls) == 3


# ---------------------------------------------------------------- every path of kubik analyze
def run_cli(argv, capsys, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        import io
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code = kubik_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv,message", [
    (["analyze", ""], "prompt is empty: write what the image should show"),
    (["analyze", "\u200b\ufeff"], "prompt is empty (it holds only invisible characters): write "
                                  "what the image should show"),
    (["analyze", "a cat\udcff"], "the prompt is not valid UTF-8 text"),
    (["analyze", "a cat", "--seed", "-5", "--wildcards", "/nonexistent/wild"],
     "--wildcards: no folder '/nonexistent/wild'; give the folder that holds your wildcard .txt "
     "files"),
    (["analyze", "a", "--ollama-url", "http://10.0.0.5:11434"],
     "--ollama-url: ollama url host '10.0.0.5' is not this machine: Kubik only talks to an Ollama "
     "on 127.0.0.1, ::1 or localhost unless the environment variable KUBIK_OLLAMA_HOSTS lists the "
     "host (comma-separated names or addresses, or * for any host) where ComfyUI or kubik runs"),
    (["analyze", "a", "--ollama-url", "file:///etc/passwd"],
     "--ollama-url: ollama url must start with http:// or https://, e.g. http://127.0.0.1:11434"),
    (["analyze", "a", "--ollama-url", "http://me:secret@127.0.0.1:1"],
     "--ollama-url: ollama url must not hold a user name or password"),
    (["analyze", "a", "--ollama-url", "http://127.0.0.1:99999"],
     "--ollama-url: ollama url is not a valid address; write it like http://127.0.0.1:11434"),
    (["analyze", "a", "--ollama-url", "http://[::1"],
     "--ollama-url: ollama url is not a valid address; write it like http://127.0.0.1:11434"),
    (["analyze", "a", "--ollama-url", "http://127.0.0.1:1/?next=http://x"],
     "--ollama-url: ollama url must be the server address only, without ? or # parts, e.g. "
     "http://127.0.0.1:11434"),
    (["analyze", "a", "--ollama-url", "http://127.0.0.1:1/a\tb"],
     "--ollama-url: ollama url must be one address such as http://127.0.0.1:11434 (no spaces or "
     "control characters)"),
    (["analyze", "a", "--ollama-url", "http://127.0.0.1:1", "--ollama-model", ""],
     "--ollama-model: ollama model is empty; type the name of an installed model (e.g. "
     "llama3.2), as `ollama list` shows it"),
    (["analyze", "a", "--ollama-url", "http://127.0.0.1:1", "--ollama-model", "x" * 201],
     "--ollama-model: ollama model must be a name of at most 200 printable characters (e.g. "
     "llama3.2)"),
] + [(["analyze", "a", "--ollama-url", "http://127.0.0.1:1", "--ollama-timeout", value],
      "--ollama-timeout: ollama timeout must be a number of seconds above 0 and at most 600")
     for value in ("nan", "inf", "-1", "0", "1e9")])
def test_kubik_analyze_errors_are_one_line(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("KUBIK_OLLAMA_HOSTS", raising=False)
    code, out, err = run_cli(argv, capsys)
    assert (code, out, err) == (2, "", f"kubik analyze: error: {message}\n")


@pytest.mark.parametrize("argv,message", [
    (["analyze", "a", "--seed", "1e5"], "argument --seed: invalid int value: '1e5'"),
    (["analyze", "a", "--ollama-timeout", "soon"],
     "argument --ollama-timeout: invalid float value: 'soon'"),
    (["analyze", "a", "--dialect", "nai"],
     "argument --dialect: invalid choice: 'nai' (choose from 'comfyui', 'a1111')"),
    (["analyze"], "the following arguments are required: prompt"),
])
def test_kubik_analyze_argument_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        kubik_main(argv)
    captured = capsys.readouterr()
    assert (caught.value.code, captured.out) == (2, "")
    assert captured.err == (f"kubik analyze: error: {message} (kubik analyze --help lists the "
                            "options)\n")


@pytest.mark.parametrize("data,message", [
    (b"\xff\xfe a cat", "standard input is not UTF-8 text (byte 0); save the prompt as UTF-8"),
    (b"a cat \xe2\x82", "standard input is not UTF-8 text (byte 6); save the prompt as UTF-8"),
    (b"a" * (4 * MAX_PROMPT_CHARS + 1),
     "the prompt on standard input is longer than 1,000,000 characters"),
    (b"a" * (MAX_PROMPT_CHARS + 1),
     "the prompt on standard input is longer than 1,000,000 characters"),
    (b"\xef\xbb\xbf\xe2\x80\x8b\n", "prompt is empty (it holds only invisible characters): "
                                    "write what the image should show"),
])
def test_kubik_analyze_from_standard_input_errors_are_one_line(data, message, capsys, monkeypatch):
    code, out, err = run_cli(["analyze", "-"], capsys, data, monkeypatch)
    assert (code, out, err) == (2, "", f"kubik analyze: error: {message}\n")


def test_kubik_analyze_reads_utf8_standard_input(capsys, monkeypatch):
    code, out, _ = run_cli(["analyze", "-", "--json"], capsys,
                           "\ufeffa red \u202efox\n".encode(), monkeypatch)
    data = json.loads(out)
    assert code == 0 and data["cleaned"] == "a red fox"


def test_kubik_analyze_in_a_real_process_prints_one_line_for_bytes_that_are_not_utf8():
    """Bytes in argv reach Python as lone surrogates; the report must not end in a traceback."""
    result = subprocess.run([sys.executable, "-m", "kubik_core", "analyze", b"a cat \xff"],
                            capture_output=True, cwd=REPO, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == \
        (2, b"", b"kubik analyze: error: the prompt is not valid UTF-8 text\n")
    result = subprocess.run([sys.executable, "-m", "kubik_core", "analyze", "--json",
                             "(x:nan) [a:b:1e400] 🐱"], capture_output=True, cwd=REPO, timeout=120,
                            env={"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stderr == b""
    assert json.loads(result.stdout)["segments"][0] == ["x", 1.0]


def test_kubik_analyze_report_survives_a_terminal_that_cannot_show_the_text():
    result = subprocess.run([sys.executable, "-m", "kubik_core", "analyze", "a 🐱 cat"],
                            capture_output=True, cwd=REPO, timeout=120,
                            env={"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stderr == b""
    assert b"Positive:     a \\U0001f431 cat" in result.stdout
