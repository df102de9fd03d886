"""Hostile input to Kubik Variations, Kubik Contact Sheet and `kubik variations`: what an API
prompt or a command line can put in any field. Each case is one exact, one-line error naming the
field; nothing is planned, queued or drawn."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.cli import main
from kubik_core.common.commands import CommandError
from kubik_core.variations.cli import lora_stack_from_flags

BASE = dict(seed=0, steps=4, cfg=5.0, sampler_name="euler", scheduler="normal", width=64, height=64)


@pytest.mark.parametrize("inputs, message", [
    (dict(x_axis="seed", x_values="0..18446744073709551616"),
     "x_values: range '0..18446744073709551616' holds 18446744073709551617 values; at most 64"),
    (dict(x_axis="seed", x_values="18446744073709551615..18446744073709551616"),
     "x_values: 18446744073709551616 is not a whole number from 0 to 18446744073709551615"),
    (dict(x_axis="steps", x_values="9" * 5000), "x_values: 5000 characters; give at most 64 values"),
    (dict(x_axis="steps", x_values=", ".join(["1"] * 65)), "x_values: more than 64 values"),
    (dict(x_axis="sampler", x_values="euler\x1b[31m"), "x_values: 'euler\\x1b[31m' is not a sampler this ComfyUI has"),
    (dict(x_axis="size", x_values="99999999x64"), "x_values: width of 99999999x64: 99999999 is not a whole number "
                                                  "from 16 to 16384"),
    (dict(x_axis="cfg", x_values="-0.5"), "x_values: -0.5 is not a number from 0 to 100"),
    (dict(x_axis="seed", x_values=["0"]), "x_values: expected text, found list"),
    (dict(x_axis={"a": 1}), "x_axis: unknown axis \"{'a': 1}\""),
    (dict(x_axis="seed", x_values="1", steps=10 ** 30), "steps: 1000000000000000000000000000000 is not a whole number"),
    (dict(x_axis="seed", x_values="1", cfg="7"), "cfg: '7' is not a CFG from 0 to 100"),
    (dict(x_axis="lora", lora_stack='{"items": [' * 100 + "]}" * 100),
     "lora_stack: not a usable stack JSON"),
    (dict(x_axis="lora", lora_stack={"items": [{"name": "/etc/passwd"}]}),
     "lora_stack: item 1: LoRA name '/etc/passwd' leaves the loras folder"),
    (dict(x_axis="lora_strength", x_values="1", lora_stack={"items": [{"name": "a", "strength_model": 1e999}]}),
     "lora_stack: item 1: strength_model should be a number from -10 to 10, found inf"),
])
def test_variations_node_refuses(run_node, inputs, message):
    values = {"x_axis": "none", "x_values": "", "y_axis": "none", "y_values": "", **BASE, **inputs}
    with pytest.raises(ValueError) as caught:
        run_node("KubikVariations", **values)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value), str(caught.value)


@pytest.mark.parametrize("images, labels, message", [
    ([torch.zeros(1, 8, 8, 3)], ["seed 1"], "labels: connect the labels output of Kubik Variations"),
    (["not an image"], None, "images: expected ComfyUI IMAGE tensors [B, H, W, C]; connect a VAE Decode"),
    ([torch.zeros(1, 8, 8, 7)], None, "images: expected ComfyUI IMAGE tensors [B, H, W, C]"),
    ([torch.zeros(2, 8, 8, 3)], None, "images: 2 pictures for a 1x1 grid of 1"),
])
def test_contact_sheet_refuses(run_node, images, labels, message):
    if labels is None:
        labels = [run_node("KubikVariations", x_axis="none", x_values="", y_axis="none", y_values="", **BASE)[8]]
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        run_node("KubikContactSheet", images=images, labels=labels)


@pytest.mark.parametrize("argv, message", [
    (["--lora", "C:/models/x.safetensors"], "--lora 'C:/models/x.safetensors': LoRA name 'C:/models/x.safetensors' "
                                            "leaves the loras folder"),
    (["--lora", ":0.5"], "--lora ':0.5': a LoRA name should be non-empty text"),
    (["--lora", "a:1e999"], "--lora 'a:1e999': strength should be a number from -10 to 10, found inf"),
    (["--x-axis", "cfg", "--x-values", "4\n5\x00"], "--x-values: '5\\x00' is not a number"),
])
def test_command_refuses(argv, message, capsys):
    assert main(["variations", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubik variations: error: {message}") and err.count("\n") == 1, err


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=4))
def test_fuzz_lora_flags_give_a_checked_stack_or_one_line(specs):
    try:
        stack = lora_stack_from_flags(specs)
    except CommandError as exc:
        assert str(exc).startswith("--lora ") and "\n" not in str(exc)
        return
    assert len(stack.items) == len(specs)
    for item in stack.items:
        assert ".." not in item.name.replace("\\", "/").split("/") and abs(item.strength_model) <= 10
