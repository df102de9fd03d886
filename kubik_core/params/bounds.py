"""Bounds on the values the optimizer learned from your edits.

Learning must not turn a few quick test runs (2 steps at 64x64) into the default for every
prompt, so the optimizer uses a learned value only inside these bounds:

* steps: from ``min_steps(family, sampler)`` to the top of the family's published range
  (families.py ``steps_range``, sourced there). Step-distilled families (Turbo, Lightning,
  Hyper, LCM, schnell, ...) keep the small minimum their cards publish. Other families also
  respect the published minimum of the sampler (SAMPLER_MIN_STEPS), e.g. 15 for DPM++ on SD1.5,
  whose own range starts at 12. The top of the range lies above the quality priority's count
  (SDXL: range to 60, quality 40): a user who keeps asking for more steps gets them, up to what
  a maker published; the optimizer uses a learned count at the quality and speed priorities only
  in the priority's direction (more for quality, fewer for speed), so a habit formed at balanced
  never undoes the priority asked for.
* cfg: the family's ``cfg_range`` (fixed at 1 for distilled and guidance-embedded models).
* guidance: within GUIDANCE_SPAN of the family's published distilled guidance (convention).
* clip_skip: -1 or -2, the values model cards ask for (convention).
* width and height: a native bucket of the family, of the framing (aspect ratio) the prompt or
  your aspect_ratio input asks for; the learned size only moves the pixel count among those.

How far a value may move per edit ("lesson") is the learning side's bound:
``kubik_core.learning.adjust`` moves it at most MAX_CHANGE_PER_LESSON of the suggested value
per consistent edit.
"""
from __future__ import annotations

import math
from typing import Any

from .families import FamilyProfile

# One edit moves a learned number at most this share of the value the optimizer suggested.
MAX_CHANGE_PER_LESSON = 0.2
GUIDANCE_SPAN = 1.5
CLIP_SKIP_RANGE = (-2, -1)

_DPM_SOLVER_PP = ("DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095): 'high-quality samples within "
                  "only 15 to 20 steps for guided sampling'")
_UNIPC = ("UniPC (Zhao et al. 2023, arXiv:2302.04867): good samples 'with only 10 function "
          "evaluations'")
_DDIM = ("DDIM (Song et al. 2021, arXiv:2010.02502): '10x to 50x faster' than DDPM's 1000 steps, "
         "i.e. 20 steps at the fast end")
# (sampler names, minimum steps, source). Samplers not listed keep the family's minimum.
SAMPLER_MIN_STEPS: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun",
      "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "dpmpp_sde", "dpmpp_sde_gpu",
      "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp"), 15, _DPM_SOLVER_PP),
    (("uni_pc", "uni_pc_bh2"), 10, _UNIPC),
    (("ddim",), 20, _DDIM),
)
_SAMPLER_FLOOR = {name: (steps, source) for names, steps, source in SAMPLER_MIN_STEPS for name in names}


def min_steps(profile: FamilyProfile, sampler: str) -> tuple[int, str]:
    """(the fewest steps a learned value may use, why) for ``sampler`` on ``profile``."""
    low, high = profile.steps_range
    if profile.distilled:
        return low, f"the published minimum of the step-distilled {profile.label}"
    floor, source = _SAMPLER_FLOOR.get(sampler, (0, ""))
    if floor > low:
        return min(floor, high), f"the published minimum of {sampler}: {source}"
    return low, f"where the published range of {profile.label} starts"


def bounded(profile: FamilyProfile, name: str, value: Any, sampler: str) -> tuple[Any, str]:
    """(``value`` moved inside the bounds of field ``name``, why it moved or "")."""
    if name == "steps":
        low, why = min_steps(profile, sampler)
        high = profile.steps_range[1]
        if value < low:
            return low, f"at least {low}, {why}"
        if value > high:
            return high, f"at most {high}, the top of the published range of {profile.label}"
        return value, ""
    if name == "cfg":
        low, high = profile.cfg_range
        if not low <= value <= high:
            clamped = min(high, max(low, value))
            return clamped, f"kept in the published CFG range {low:g}-{high:g} of {profile.label}"
        return value, ""
    if name == "guidance" and profile.guidance is not None:
        low = max(1.0, profile.guidance - GUIDANCE_SPAN)
        high = profile.guidance + GUIDANCE_SPAN
        if not low <= value <= high:
            clamped = round(min(high, max(low, value)), 2)
            return clamped, (f"kept within {GUIDANCE_SPAN:g} of the published guidance "
                             f"{profile.guidance:g} (convention)")
        return value, ""
    if name == "clip_skip":
        low, high = CLIP_SKIP_RANGE
        if not low <= value <= high:
            return min(high, max(low, value)), "clip skip stays 1 or 2, what model cards ask for"
        return value, ""
    return value, ""


def native_size(profile: FamilyProfile, width: float, height: float) -> tuple[int, int]:
    """The family bucket nearest ``width`` x ``height``: closest aspect ratio (in log space),
    then closest pixel count, so a learned size is always one the model was trained at."""
    aspect = math.log(min(4.0, max(0.25, width / height)))
    area = math.log(max(1, width * height))
    return min(profile.buckets, key=lambda wh: (round(abs(math.log(wh[0] / wh[1]) - aspect), 3),
                                                abs(math.log(wh[0] * wh[1]) - area)))
