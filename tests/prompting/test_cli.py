"""``kubik analyze``: the readable report and the documented --json interface."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubik_core.prompting import cli


def run(argv, capsys):
    """Run the analyze sub-command as kubik_core.cli.main does (exit code 2 on CommandError)."""
    from kubik_core.cli import CommandError

    parser = argparse.ArgumentParser(prog="kubik")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except CommandError as exc:
        return 2, "", str(exc)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_is_the_documented_interface(capsys):
    code, out, _ = run(["analyze", "masterpiece, 1girl, (smile:1.2), [hat]", "--json"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["segments"] == [["masterpiece, 1girl, ", 1.0], ["smile", 1.2], [", [hat]", 1.0]]
    assert data["style"] == "anime" and data["content_type"] == "character"
    for key in ("concepts", "complexity", "negative", "cleaned", "summary", "notes", "source"):
        assert key in data
    assert "overall" in data["complexity"]


def test_a1111_dialect_and_seed(capsys, tmp_path):
    (tmp_path / "hat.txt").write_text("beret\nfedora\n", encoding="utf-8")
    code, out, _ = run(["analyze", "a {cat|dog} in a __hat__, [hat]", "--dialect", "a1111",
                        "--seed", "3", "--wildcards", str(tmp_path), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["dialect"] == "a1111"
    assert data["segments"][-1] == ["hat", pytest.approx(1 / 1.1)]
    assert "{" not in data["cleaned"] and "__" not in data["cleaned"]


def test_readable_report(capsys):
    code, out, _ = run(["analyze", "RAW photo of a (red fox:1.3) in a forest, golden hour"], capsys)
    assert code == 0
    assert "Style:        photographic" in out
    assert " 1.300  'red fox'" in out
    assert "lighting: golden hour" in out
    assert out.count("Negative:") == 1 and "Summary:" in out


def test_ollama_flags_fall_back_with_a_note(capsys):
    code, out, _ = run(["analyze", "a cat", "--ollama-url", "http://127.0.0.1:9",
                        "--ollama-timeout", "1", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["source"] == "rules"
    assert any("Ollama not used" in note for note in data["notes"])


@pytest.mark.parametrize("argv,message", [
    (["analyze", "   "], "prompt is empty"),
    (["analyze", "__../x__", "--wildcards", "."], "outside the wildcards folder"),
    (["analyze", "a", "--ollama-url", "http://127.0.0.1:9", "--ollama-timeout", "0"],
     "--ollama-timeout: ollama timeout must be a number of seconds above 0"),
])
def test_user_errors_are_one_line_messages(argv, message, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err


def test_unknown_dialect_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        run(["analyze", "a cat", "--dialect", "nai"], capsys)
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_cli_module_run_as_a_script_reports_a_user_error_in_one_line():
    """`python -m kubik_core.cli` runs cli.py as __main__, a second copy of that module: the
    CommandError a sub-command raises must still be the one it catches (it lives in
    common/commands.py, not in cli.py), so the user sees one line and status 2, no traceback."""
    done = subprocess.run([sys.executable, "-m", "kubik_core.cli", "analyze", "   "],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=100)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "kubik analyze: error: prompt is empty: write what the image should show"], done.stderr
