"""Batch variation nodes: Kubik Variations and Kubik Contact Sheet.

Thin wrappers over kubik_core.variations. Kubik Variations returns lists (OUTPUT_IS_LIST), so
ComfyUI runs the nodes it feeds once per variation: KSampler, EmptyLatentImage and Kubik Apply
LoRA Stack take the values from it, while the checkpoint loader upstream runs once. A value
that does not vary is a one-entry list, so whatever depends only on it runs once too.
"""
from __future__ import annotations

import numpy as np

from . import comfy_bridge as bridge
from ..kubik_core.loras.stack import stack_from_input
from ..kubik_core.variations import (AXES, MAX_VARIATIONS, BaseSettings, VariationError, VariationGrid,
                                     contact_sheet, output_lists, plan_variations)
from ..kubik_core.variations.plan import MAX_CFG, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, OUTPUT_FIELDS

# The live KSampler lists, so the outputs link to KSampler's combos (ComfyUI compares
# list-typed sockets by value) and any sampler or scheduler ComfyUI lists can be swept.
_SAMPLERS = bridge.sampler_names()
_SCHEDULERS = bridge.scheduler_names()

_AXIS_TOOLTIP = ("What the {which} axis varies. seed; steps, cfg, sampler, scheduler, size (parameters); "
                 "lora: each LoRA of the connected stack alone (e.g. each recommender candidate); "
                 "lora_strength: the whole stack at several strengths. Two axes give every "
                 "combination (at most {max} pictures).")
_VALUES_TOOLTIP = ("Comma-separated values of the {which} axis: seeds or steps as 1, 5, 9 or a range 0..7; "
                   "cfg 4, 6.5, 8; sampler or scheduler names as ComfyUI lists them; sizes 512x512, 512x768; "
                   "lora: names or file stems of the stack's LoRAs and 'none' (empty = every LoRA); "
                   "lora_strength: factors on each strength, e.g. 0, 0.5, 1.")


class KubikVariations:
    CATEGORY = "KubikAI/variations"
    FUNCTION = "plan"
    DESCRIPTION = ("Makes a batch of variations in one queue, with one loaded model: link its outputs to "
                   "KSampler (seed, steps, cfg, sampler_name, scheduler), EmptyLatentImage (width, height) "
                   "and Kubik Apply LoRA Stack, and its labels with the decoded images to Kubik Contact "
                   "Sheet. Each picture is the one a plain KSampler run with its values gives.")
    RETURN_TYPES = ("INT", "INT", "FLOAT", _SAMPLERS, _SCHEDULERS, "INT", "INT", "KUBIK_LORA_STACK",
                    "KUBIK_VARIATION_LABELS", "STRING")
    RETURN_NAMES = ("seed", "steps", "cfg", "sampler_name", "scheduler", "width", "height", "lora_stack",
                    "labels", "summary")
    OUTPUT_IS_LIST = (True,) * 8 + (False, False)
    OUTPUT_TOOLTIPS = (
        "Seeds, one per variation: link to KSampler seed.",
        "Steps: link to KSampler steps.",
        "CFG: link to KSampler cfg.",
        "Sampler: link to KSampler sampler_name.",
        "Scheduler: link to KSampler scheduler.",
        "Width: link to EmptyLatentImage width.",
        "Height: link to EmptyLatentImage height.",
        "The LoRA stack of each variation: link to Kubik Apply LoRA Stack (empty when none is connected).",
        "The grid's axes and labels: link to Kubik Contact Sheet.",
        "One line per variation with its values (for PreviewAny or a note).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        axis = lambda which: (list(AXES), {"default": "none", "tooltip": _AXIS_TOOLTIP.format(which=which,
                                                                                              max=MAX_VARIATIONS)})
        values = lambda which, default: ("STRING", {"default": default, "multiline": False,
                                                    "tooltip": _VALUES_TOOLTIP.format(which=which)})
        return {
            "required": {
                "x_axis": (list(AXES), {"default": "seed", "tooltip": _AXIS_TOOLTIP.format(which="X (columns)",
                                                                                         max=MAX_VARIATIONS)}),
                "x_values": values("X", "0..3"),
                "y_axis": axis("Y (rows)"),
                "y_values": values("Y", ""),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": False,
                                 "tooltip": "Base seed, used by every variation unless an axis varies the seed."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": MAX_STEPS, "tooltip": "Base steps."}),
                "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": MAX_CFG, "step": 0.1, "round": 0.01,
                                  "tooltip": "Base CFG (1.0 for FLUX and distilled models)."}),
                "sampler_name": (_SAMPLERS, {"tooltip": "Base sampler (any ComfyUI lists)."}),
                "scheduler": (_SCHEDULERS, {"tooltip": "Base scheduler (any ComfyUI lists)."}),
                "width": ("INT", {"default": 512, "min": MIN_SIZE, "max": MAX_SIZE, "step": 8,
                                  "tooltip": "Base width in pixels (multiple of 8)."}),
                "height": ("INT", {"default": 512, "min": MIN_SIZE, "max": MAX_SIZE, "step": 8,
                                   "tooltip": "Base height in pixels (multiple of 8)."}),
            },
            "optional": {
                "lora_stack": ("KUBIK_LORA_STACK", {"tooltip": "LoRAs for the lora and lora_strength axes "
                               "(Kubik LoRA Recommender's candidates, or Kubik LoRA Stack); passed through "
                               "unchanged otherwise."}),
            },
        }

    def plan(self, x_axis, x_values, y_axis, y_values, seed, steps, cfg, sampler_name, scheduler, width,
             height, lora_stack=None):
        if lora_stack is not None:
            lora_stack = stack_from_input(lora_stack, "lora_stack")
        base = BaseSettings(seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                            width=width, height=height)
        plan = plan_variations(base, x_axis, x_values, y_axis, y_values, lora_stack,
                               samplers=bridge.sampler_names(), schedulers=bridge.scheduler_names())
        lists = output_lists(plan)
        summary = "\n".join(_describe(n, v) for n, v in enumerate(plan.variations, 1))
        return tuple(lists[name] for name in OUTPUT_FIELDS) + (plan.grid, summary)


def _describe(number: int, variation) -> str:
    loras = ", ".join(f"{i.name} {i.strength_model:g}" for i in variation.lora_stack.items) or "no LoRA"
    return (f"{number}: seed {variation.seed}, {variation.steps} steps, cfg {variation.cfg:g}, "
            f"{variation.sampler_name}/{variation.scheduler}, {variation.width}x{variation.height}, {loras}")


class KubikContactSheet:
    CATEGORY = "KubikAI/variations"
    FUNCTION = "sheet"
    DESCRIPTION = ("Lays the pictures of a Kubik Variations batch out in a grid, X values as columns and Y "
                   "values as rows, each labelled (Pillow's own font), as one IMAGE for Save Image.")
    INPUT_IS_LIST = True
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("sheet",)
    OUTPUT_TOOLTIPS = ("The contact sheet: link to Save Image or Preview Image.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The decoded pictures of the batch (VAE Decode after the KSampler "
                                            "that Kubik Variations drives)."}),
            "labels": ("KUBIK_VARIATION_LABELS", {"tooltip": "The labels output of the same Kubik Variations."}),
        }}

    def sheet(self, images, labels):
        grid = labels[0] if isinstance(labels, list) and labels else labels
        if not isinstance(grid, VariationGrid):
            raise ValueError("labels: connect the labels output of Kubik Variations")
        pictures = [_to_uint8(frame) for batch in images for frame in _frames(batch)]
        try:
            sheet = contact_sheet(pictures, grid)
        except VariationError as exc:
            raise ValueError(str(exc)) from None
        import torch

        return (torch.from_numpy(sheet.astype(np.float32) / 255.0).unsqueeze(0),)


def _frames(batch):
    """The pictures of one IMAGE ([B, H, W, C] or [H, W, C])."""
    if not hasattr(batch, "shape") or batch.ndim not in (3, 4) or batch.shape[-1] not in (1, 3, 4):
        raise ValueError("images: expected ComfyUI IMAGE tensors [B, H, W, C]; connect a VAE Decode")
    return [batch] if batch.ndim == 3 else list(batch)


def _to_uint8(frame) -> np.ndarray:
    """8-bit RGB converted as Save Image converts (255 x value, cut off), so a cell of the sheet
    has the very pixels of the picture saved alone."""
    array = frame.detach().float().cpu().numpy() if hasattr(frame, "detach") else np.asarray(frame, np.float32)
    array = np.clip(255.0 * array, 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


NODE_CLASS_MAPPINGS = {
    "KubikVariations": KubikVariations,
    "KubikContactSheet": KubikContactSheet,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "KubikVariations": "Kubik Variations",
    "KubikContactSheet": "Kubik Contact Sheet",
}
