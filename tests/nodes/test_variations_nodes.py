"""Kubik Variations and Kubik Contact Sheet run as ComfyUI's executor calls them (without ComfyUI:
the built-in sampler lists). The real server's runs are in test_variations_server.py."""
from __future__ import annotations

import pytest
import torch

BASE = dict(seed=11, steps=8, cfg=5.5, sampler_name="euler", scheduler="normal", width=64, height=64)


def test_outputs_are_lists_for_comfyui_to_map_over(node_classes, run_node):
    cls = node_classes["KubikVariations"]
    assert cls.OUTPUT_IS_LIST == (True,) * 8 + (False, False)
    assert cls.RETURN_NAMES[:7] == ("seed", "steps", "cfg", "sampler_name", "scheduler", "width", "height")
    seeds, steps, cfgs, samplers, schedulers, widths, heights, stacks, labels, summary = run_node(
        "KubikVariations", x_axis="seed", x_values="1..3", y_axis="scheduler", y_values="karras, beta", **BASE)
    assert seeds == [1, 2, 3, 1, 2, 3] and schedulers == ["karras"] * 3 + ["beta"] * 3
    assert steps == [8] and cfgs == [5.5] and samplers == ["euler"] and widths == [64] and heights == [64]
    assert len(stacks) == 1 and len(stacks[0]) == 0
    assert labels.x_labels == ("seed 1", "seed 2", "seed 3") and labels.y_labels == ("karras", "beta")
    assert summary.splitlines()[4] == "5: seed 2, 8 steps, cfg 5.5, euler/beta, 64x64, no LoRA"
    # the combo outputs carry KSampler's own lists, so they link into its sampler/scheduler inputs
    assert cls.RETURN_TYPES[3] == cls.INPUT_TYPES()["required"]["sampler_name"][0]


def test_a_stack_given_as_json_is_checked_and_swept(run_node):
    stack = {"items": [{"name": "a.safetensors", "strength_model": 1.0, "strength_clip": 0.5}]}
    out = run_node("KubikVariations", x_axis="lora_strength", x_values="0, 1.5", y_axis="none", y_values="",
                   lora_stack=stack, **BASE)
    assert [[(i.strength_model, i.strength_clip) for i in s.items] for s in out[7]] == [[(0.0, 0.0)], [(1.5, 0.75)]]
    with pytest.raises(ValueError, match=r"^lora_stack: item 1: LoRA name '\.\./x' leaves the loras folder"):
        run_node("KubikVariations", x_axis="lora", x_values="", y_axis="none", y_values="",
                 lora_stack={"items": [{"name": "../x"}]}, **BASE)


def test_errors_name_the_input(run_node):
    with pytest.raises(ValueError, match=r"^y_values: 'warp' is not a scheduler this ComfyUI has"):
        run_node("KubikVariations", x_axis="seed", x_values="1", y_axis="scheduler", y_values="warp", **BASE)
    with pytest.raises(ValueError, match=r"^width: 60 is not a multiple of 8"):
        run_node("KubikVariations", x_axis="seed", x_values="1", y_axis="none", y_values="", **{**BASE, "width": 60})


def test_contact_sheet_takes_the_image_list_and_the_labels(node_classes, run_node):
    assert node_classes["KubikContactSheet"].INPUT_IS_LIST is True
    labels = run_node("KubikVariations", x_axis="cfg", x_values="3, 9", y_axis="none", y_values="", **BASE)[8]
    images = [torch.full((1, 48, 40, 3), 0.25), torch.full((1, 48, 40, 3), 0.75)]
    (sheet,) = run_node("KubikContactSheet", images=images, labels=[labels])
    assert sheet.shape[0] == 1 and sheet.shape[3] == 3 and sheet.dtype == torch.float32
    assert sheet.shape[2] == 2 * 40 + 3 * 4 and sheet.shape[1] > 48
    values = {round(v, 2) for v in sheet.flatten().tolist()}
    assert {0.25, 0.75} <= values, "both pictures are on the sheet"
    with pytest.raises(ValueError, match=r"^images: 1 pictures for a 2x1 grid of 2"):
        run_node("KubikContactSheet", images=images[:1], labels=[labels])
    with pytest.raises(ValueError, match=r"^labels: connect the labels output of Kubik Variations"):
        run_node("KubikContactSheet", images=images, labels=["seed 1"])
