"""kubik_core.common.precision: one --precision vocabulary for every command that runs a network."""
from __future__ import annotations

import argparse

import pytest
import torch

from kubik_core.common.precision import (ALIASES, PRECISIONS, autocast, autocast_dtype, check_precision,
                                         needs_grad_scaler)

CPU = torch.device("cpu")


def test_the_vocabulary_and_its_one_alias():
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert [check_precision(word) for word in PRECISIONS] == list(PRECISIONS)
    assert check_precision("none") == "fp32" and ALIASES == {"none": "fp32"}


@pytest.mark.parametrize("bad", ["half", "BF16", "", None, 16])
def test_another_word_is_refused_naming_the_flag_and_the_words(bad):
    with pytest.raises(ValueError) as info:
        check_precision(bad, "--amp")
    assert str(info.value) == (f"--amp must be one of auto, fp32, bf16, fp16 ('none' also means fp32), "
                               f"got {bad!r}")


def _matmul_dtype(precision: str) -> torch.dtype:
    a = torch.ones(4, 4)
    with autocast(CPU, precision):
        return (a @ a).dtype


def test_autocast_on_the_cpu():
    assert _matmul_dtype("fp32") == _matmul_dtype("none") == torch.float32
    assert _matmul_dtype("auto") == torch.float32          # auto: bf16 only on a GPU that runs it
    assert _matmul_dtype("bf16") == torch.bfloat16
    assert autocast_dtype(CPU, "fp16") == torch.float16
    assert autocast_dtype(torch.device("meta"), "auto") is None


def test_only_fp16_needs_a_gradient_scaler():
    assert needs_grad_scaler(CPU, "fp16")
    assert not any(needs_grad_scaler(CPU, word) for word in ("auto", "fp32", "none", "bf16"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_is_bf16_on_a_gpu_that_supports_it():
    gpu = torch.device("cuda")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert autocast_dtype(gpu, "auto") is expected


def _options(parser: argparse.ArgumentParser, path=()):
    """(command path, action) for every option of ``parser`` and its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield path, action


def test_every_precision_option_of_kubik_speaks_the_one_vocabulary():
    from kubik_core.cli import build_parser

    found = []
    for path, action in _options(build_parser()):
        if not {"--precision", "--amp"} & set(action.option_strings):
            continue
        found.append(" ".join(path))
        words = action.choices if action.choices is not None else [*PRECISIONS, *ALIASES]
        for word in words:
            value = action.type(word) if action.type else word
            assert check_precision(value) in PRECISIONS, (path, action.option_strings, word)
    assert "classify train" in found and "3d train-vae" in found, found
