"""`kubik classify train --precision` speaks the one vocabulary; the older --amp still works."""
from __future__ import annotations

import pytest

from kubik_core.classify.train import TrainConfig
from kubik_core.cli import build_parser

BASE = ["classify", "train", "--data", "split", "--out", "run"]


def _parsed(*extra: str) -> str:
    return build_parser("classify").parse_args([*BASE, *extra]).amp


def test_help_documents_precision_and_keeps_amp_out_of_sight(capsys):
    with pytest.raises(SystemExit):
        build_parser("classify").parse_args(["classify", "train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--precision {auto,fp32,bf16,fp16}" in shown
    assert "the older spelling --amp none|bf16|fp16 still works" in shown
    assert "--amp {" not in shown and "--amp AMP" not in shown


def test_both_spellings_and_every_word_a_user_already_types():
    assert _parsed() == "fp32"                                  # the default: as before, no autocast
    assert [_parsed("--amp", word) for word in ("none", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    assert [_parsed("--precision", word) for word in ("auto", "fp32", "bf16", "fp16", "none")] == \
        ["auto", "fp32", "bf16", "fp16", "fp32"]


def test_another_word_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as info:
        _parsed("--amp", "half")
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "kubik classify train: error: argument --amp: the value must be one of auto, fp32, bf16, "
        "fp16 ('none' also means fp32), got 'half'")


def test_the_python_config_takes_the_same_words(tmp_path):
    assert TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), amp="none").amp == "fp32"
    with pytest.raises(ValueError, match=r"^--precision must be one of auto, fp32, bf16, fp16 "):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), amp="half")
