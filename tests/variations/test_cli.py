"""``kubik variations`` without a server: the plan as JSON (printed or written), and one-line
errors with exit status 2. Queueing on a real ComfyUI is in tests/nodes/test_variations_server.py."""
from __future__ import annotations

import json

import pytest

from kubik_core.cli import main


def test_plan_is_printed_as_json(capsys):
    assert main(["variations", "--x-axis", "cfg", "--x-values", "4, 7", "--y-axis", "lora", "--y-values",
                 "none, ink", "--lora", "styles/ink.safetensors:0.8", "--lora", "b.safetensors:0.5:0.3",
                 "--sampler", "dpmpp_2m", "--seed", "9"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["count"] == 4
    assert plan["grid"] == {"x_axis": "cfg", "x_labels": ["cfg 4", "cfg 7"], "y_axis": "lora",
                            "y_labels": ["no LoRA", "ink"]}
    assert [(v["cfg"], v["loras"]) for v in plan["variations"]] == [
        (4.0, []), (7.0, []),
        (4.0, [{"name": "styles/ink.safetensors", "strength_model": 0.8, "strength_clip": 0.8}]),
        (7.0, [{"name": "styles/ink.safetensors", "strength_model": 0.8, "strength_clip": 0.8}])]
    assert {(v["seed"], v["sampler_name"], v["steps"]) for v in plan["variations"]} == {(9, "dpmpp_2m", 20)}


def test_plan_is_written_to_a_file(tmp_path, capsys):
    target = tmp_path / "plan.json"
    assert main(["variations", "--x-axis", "seed", "--write", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert [v["seed"] for v in json.loads(target.read_text())["variations"]] == [0, 1, 2, 3]


@pytest.mark.parametrize("argv, message", [
    (["--x-values", "0..99"], "--x-values: range '0..99' holds 100 values; at most 64 variations fit in one batch"),
    (["--x-axis", "sampler", "--x-values", "warp"], "--x-values: 'warp' is not a sampler this ComfyUI has"),
    (["--width", "500"], "width: 500 is not a multiple of 8"),
    (["--lora", "../x.safetensors:1"], "--lora '../x.safetensors:1': LoRA name '../x.safetensors' leaves the "
                                        "loras folder"),
    (["--lora", "a.safetensors:nan"], "--lora 'a.safetensors:nan': strength should be a number from -10 to 10"),
    (["--x-axis", "lora_strength", "--x-values", "1"], "--x-values: a LoRA axis needs LoRAs"),
    (["--server", "http://127.0.0.1:1"], "--server is for --queue: give the workflow to queue"),
    (["--queue", "wf.json"], "--queue needs --server URL"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    assert main(["variations", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubik variations: error: {message}") and err.count("\n") == 1, err


def test_lora_flags_take_up_to_two_trailing_strengths():
    from kubik_core.variations.cli import lora_stack_from_flags

    stack = lora_stack_from_flags(["a.safetensors", "b.safetensors:0.5", "c.safetensors:0.5:-1", "ep:01.safetensors:2"])
    assert [(i.name, i.strength_model, i.strength_clip) for i in stack.items] == [
        ("a.safetensors", 1.0, 1.0), ("b.safetensors", 0.5, 0.5), ("c.safetensors", 0.5, -1.0),
        ("ep:01.safetensors", 2.0, 2.0)]
