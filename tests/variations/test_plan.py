"""Planning a batch of variations: axes, their values, the order of the cells, and the lists the
node hands to ComfyUI (one entry for what does not vary)."""
from __future__ import annotations

import pytest

from kubik_core.loras.stack import LoraStack, StackItem
from kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS
from kubik_core.variations import BaseSettings, VariationError, output_lists, plan_variations

BASE = BaseSettings(seed=7, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", width=512, height=512)
LISTS = {"samplers": KSAMPLER_SAMPLERS, "schedulers": KSAMPLER_SCHEDULERS}
STACK = LoraStack([StackItem("styles/ink_wash.safetensors", 0.8, 0.6, triggers=["inkwash"]),
                   StackItem("detail_tweaker.safetensors", 0.5, 0.5)])


def plan(x_axis="none", x_values="", y_axis="none", y_values="", stack=None, base=BASE):
    return plan_variations(base, x_axis, x_values, y_axis, y_values, stack, **LISTS)


def test_seed_axis_takes_lists_and_ranges_and_keeps_the_rest():
    p = plan("seed", "3, 10..12")
    assert [v.seed for v in p.variations] == [3, 10, 11, 12]
    assert {(v.steps, v.cfg, v.sampler_name, v.scheduler, v.width, v.height) for v in p.variations} == \
        {(20, 7.0, "euler", "normal", 512, 512)}
    assert p.grid.x_labels == ("seed 3", "seed 10", "seed 11", "seed 12") and p.grid.y_axis == "none"
    lists = output_lists(p)
    assert lists["seed"] == [3, 10, 11, 12]
    # what does not vary is one entry: EmptyLatentImage and Apply LoRA Stack then run once
    assert lists["steps"] == [20] and lists["width"] == [512] and len(lists["lora_stack"]) == 1


def test_mixed_axes_give_every_combination_rows_of_x():
    p = plan("cfg", "4, 6.5", "sampler", "euler, dpmpp_2m, uni_pc")
    assert [(v.cfg, v.sampler_name) for v in p.variations] == [
        (4.0, "euler"), (6.5, "euler"), (4.0, "dpmpp_2m"), (6.5, "dpmpp_2m"), (4.0, "uni_pc"), (6.5, "uni_pc")]
    assert (p.grid.columns, p.grid.rows) == (2, 3)
    assert p.grid.x_labels == ("cfg 4", "cfg 6.5") and p.grid.y_labels == ("euler", "dpmpp_2m", "uni_pc")
    lists = output_lists(p)
    assert lists["cfg"] == [4.0, 6.5] * 3 and lists["seed"] == [7]


def test_parameter_axes_steps_scheduler_size():
    p = plan("size", "512x768, 768 x 512", "scheduler", "karras, beta")
    assert [(v.width, v.height, v.scheduler) for v in p.variations] == [
        (512, 768, "karras"), (768, 512, "karras"), (512, 768, "beta"), (768, 512, "beta")]
    assert output_lists(p)["height"] == [768, 512, 768, 512]
    assert [v.steps for v in plan("steps", "4..6").variations] == [4, 5, 6]


def test_sampler_lists_come_from_the_caller_so_any_pack_sampler_works():
    p = plan_variations(BASE, "sampler", "euler, my_pack_sampler", samplers=[*KSAMPLER_SAMPLERS, "my_pack_sampler"],
                        schedulers=KSAMPLER_SCHEDULERS)
    assert [v.sampler_name for v in p.variations] == ["euler", "my_pack_sampler"]
    with pytest.raises(VariationError, match=r"^x_values: 'my_pack_sampler' is not a sampler this ComfyUI has"):
        plan("sampler", "my_pack_sampler")


def test_lora_axis_each_candidate_alone_at_its_strength():
    p = plan("lora", "", stack=STACK)
    assert [[(i.name, i.strength_model, i.strength_clip) for i in v.lora_stack.items] for v in p.variations] == [
        [("styles/ink_wash.safetensors", 0.8, 0.6)], [("detail_tweaker.safetensors", 0.5, 0.5)]]
    assert p.grid.x_labels == ("ink_wash", "detail_tweaker")
    assert p.variations[0].lora_stack.items[0].triggers == ["inkwash"]
    picked = plan("lora", "none, Detail_Tweaker", stack=STACK)
    assert [len(v.lora_stack) for v in picked.variations] == [0, 1]
    assert picked.grid.x_labels == ("no LoRA", "detail_tweaker")


def test_lora_strength_sweeps_the_whole_stack_and_crosses_with_seeds():
    p = plan("lora_strength", "0, 0.5, 1", "seed", "1, 2", stack=STACK)
    assert len(p) == 6
    assert [[i.strength_model for i in v.lora_stack.items] for v in p.variations[:3]] == [
        [0.0, 0.0], [0.4, 0.25], [0.8, 0.5]]
    assert [i.strength_clip for i in p.variations[2].lora_stack.items] == [0.6, 0.5]
    assert [v.seed for v in p.variations] == [1, 1, 1, 2, 2, 2]
    assert STACK.items[0].strength_model == 0.8, "the connected stack is not changed"
    assert len(output_lists(p)["lora_stack"]) == 6


def test_no_axis_is_one_picture_with_the_base_values():
    p = plan()
    assert len(p) == 1 and p.variations[0].seed == 7 and (p.grid.columns, p.grid.rows) == (1, 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(x_axis="seed", x_values="0..64"),
     "x_values: range '0..64' holds 65 values; at most 64 variations fit in one batch"),
    (dict(x_axis="seed", x_values="0..7", y_axis="cfg", y_values="1, 2, 3, 4, 5, 6, 7, 8, 9"),
     "y_values: 8 x 9 = 72 variations; at most 64 fit in one batch (fewer values, or queue two batches)"),
    (dict(x_axis="seed", x_values="5..1"), "x_values: range '5..1' runs backwards; write it as 1..5"),
    (dict(x_axis="seed", x_values="-1"), "x_values: -1 is not a whole number from 0 to 18446744073709551615"),
    (dict(x_axis="steps", x_values="ten"), "x_values: 'ten' is not a whole number (write e.g. 1, 2, 3 or 1..4)"),
    (dict(x_axis="steps", x_values="0"), "x_values: 0 is not a whole number from 1 to 10000"),
    (dict(x_axis="cfg", x_values="nan"), "x_values: nan is not a number from 0 to 100"),
    (dict(x_axis="cfg", x_values="1e999"), "x_values: 1e999 is not a number from 0 to 100"),
    (dict(x_axis="size", x_values="512x500"), "x_values: height of 512x500: 500 is not a multiple of 8 "
                                              "(latents are 1/8 of the picture)"),
    (dict(x_axis="size", x_values="big"), "x_values: 'big' is not a size (write WIDTHxHEIGHT, e.g. 512x768)"),
    (dict(x_axis="cfg", x_values=" , "), "x_values: no values for the cfg axis (write e.g. 4, 6, 8)"),
    (dict(x_axis="seed", x_values="1", y_axis="seed", y_values="2"),
     "y_axis: seed is already the X axis; pick another axis, or list every value on the X axis"),
    (dict(y_axis="cfg", y_values="4"), "x_axis: set the X axis first (y_axis alone is a column; use x_axis for it)"),
    (dict(x_axis="zoom"), "x_axis: unknown axis 'zoom'; pick one of none, seed, steps, cfg, sampler, scheduler, "
                          "size, lora, lora_strength"),
    (dict(x_axis="lora"), "x_values: a LoRA axis needs LoRAs: connect lora_stack (Kubik LoRA Recommender or "
                          "Kubik LoRA Stack) with at least one LoRA"),
    (dict(x_axis="lora", x_values="missing", stack=STACK),
     "x_values: 'missing' is not in the connected stack (ink_wash, detail_tweaker); leave the values empty for "
     "every LoRA of it, or add 'none' for a picture without"),
    (dict(x_axis="lora_strength", x_values="20", stack=STACK), "x_values: 20 is not a number from -10 to 10"),
    (dict(x_axis="lora_strength", x_values="1, 6", stack=LoraStack([StackItem("strong.safetensors", 2.0, 1.0)])),
     "x_values: 6 takes strong to strength 12, beyond 10"),
    (dict(x_axis="lora", y_axis="lora_strength", y_values="1", stack=STACK),
     "y_axis: lora and lora_strength together are one sweep; use lora with strengths on the stack, or "
     "lora_strength alone"),
    (dict(x_axis="seed", x_values="1" * 5000), "x_values: 5000 characters; give at most 64 values"),
])
def test_bad_values_are_one_line_errors_naming_the_input(kwargs, message):
    with pytest.raises(VariationError) as caught:
        plan(**kwargs)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize("base, message", [
    (BaseSettings(steps=0), "steps: 0 is not a whole number from 1 to 10000"),
    (BaseSettings(cfg=float("inf")), "cfg: inf is not a CFG from 0 to 100"),
    (BaseSettings(width=500), "width: 500 is not a multiple of 8"),
    (BaseSettings(sampler_name="nope"), "sampler_name: 'nope' is not a sampler this ComfyUI has"),
    (BaseSettings(scheduler=3), "scheduler: '3' is not a scheduler this ComfyUI has"),
    (BaseSettings(seed=True), "seed: True is not a whole number"),
])
def test_bad_base_values_are_refused(base, message):
    with pytest.raises(VariationError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        plan("seed", "1", base=base)
