"""Batch variations: one queue, many pictures from one loaded model, and their contact sheet.

- ``plan``: the variations of a batch along up to two axes (seed, steps, CFG, sampler,
  scheduler, size, each LoRA of a stack, the stack's strength), checked, with their labels.
- ``sheet``: the contact sheet (XY grid) of the pictures, with labelled axes.
- ``cli``: ``kubik variations``, the plan as JSON, optionally queued on ComfyUI servers.

Imports ``kubik_core.common``, ``kubik_core.loras`` (the LoRA stack) and, in the command only,
``kubik_core.comfy_client``.
"""
from .plan import (AXES, MAX_VARIATIONS, BaseSettings, Variation, VariationError, VariationGrid, VariationPlan,
                   output_lists, plan_variations)
from .sheet import contact_sheet

__all__ = ["AXES", "MAX_VARIATIONS", "BaseSettings", "Variation", "VariationError", "VariationGrid",
           "VariationPlan", "output_lists", "plan_variations", "contact_sheet"]
