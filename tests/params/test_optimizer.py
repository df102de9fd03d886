"""optimize(): choices driven by the analysis and priority, modes, overrides, bad input."""
from __future__ import annotations

import json
import math

import pytest

from kubik_core.params import (FAMILIES, FAMILY_IDS, PRIORITIES, ParamsError, SamplingPlan,
                               optimize)
from kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS


@pytest.mark.parametrize("family", FAMILY_IDS)
@pytest.mark.parametrize("priority", PRIORITIES)
def test_every_family_and_priority_without_analysis(family, priority):
    plan = optimize(None, family, priority=priority, device="rtx4090")
    profile = FAMILIES[family]
    assert plan.sampler_name in KSAMPLER_SAMPLERS and plan.scheduler in KSAMPLER_SCHEDULERS
    assert (plan.width, plan.height) in profile.buckets
    assert profile.steps_range[0] <= plan.steps <= profile.steps_range[1]
    assert (plan.guidance is not None) == (profile.guidance is not None)
    assert plan.estimated_vram_gb > 0 and plan.estimated_seconds > 0
    fields = {d.field for d in plan.decisions}
    assert {"steps", "cfg", "sampler_name", "scheduler", "width", "height"} <= fields
    assert all(d.reason and d.source for d in plan.decisions)


def test_a_cinematic_close_up_portrait_is_framed_tall_not_wide(analyze):
    """Issue 23: 'cinematic' is a style, not a framing cue; a wide shot is still framed wide."""
    portrait = analyze("cinematic close-up portrait of an old fisherman, soft window light")
    for family in ("sdxl", "flux_dev", "sd15", "qwen_image"):
        plan = optimize(portrait, family, device="rtx4090")
        assert plan.height > plan.width, family
        width = next(d for d in plan.decisions if d.field == "width")
        assert "wide" not in width.reason and "cinematic" not in width.reason
    wide = optimize(analyze("a vast mountain landscape with a lake at sunrise, wide shot"), "sdxl", device="rtx4090")
    assert wide.width > wide.height


def test_complex_prompts_get_more_steps(analyze):
    simple = analyze("a red apple")
    complex_ = analyze("a crowded medieval market at dusk, dozens of merchants and knights, "
                       "intricate embroidered costumes, volumetric light through banners, reflections "
                       "in puddles, highly detailed, wide establishing shot, oil painting, baroque")
    assert complex_.complexity["overall"] > simple.complexity["overall"]
    plan_simple = optimize(simple, "sdxl", device="cpu")
    plan_complex = optimize(complex_, "sdxl", device="cpu")
    assert plan_complex.steps > plan_simple.steps
    # distilled models keep their trained step count whatever the prompt
    assert optimize(complex_, "flux_schnell", device="cpu").steps == optimize(simple, "flux_schnell", device="cpu").steps


def test_style_drives_cfg_and_sampler(analyze):
    photo = analyze("professional photo of a woman, 85mm lens, natural skin texture, photorealistic")
    anime = analyze("anime girl with silver hair, cel shading, manga style illustration")
    assert photo.style in ("photographic", "cinematic") and anime.style in ("anime", "illustration")
    plan_photo = optimize(photo, "sdxl", device="cpu")
    plan_anime = optimize(anime, "sdxl", device="cpu")
    assert plan_photo.cfg < plan_anime.cfg
    assert plan_photo.sampler_name == "dpmpp_2m_sde_gpu" and plan_anime.sampler_name == "euler_ancestral"
    flux = optimize(photo, "flux_dev", device="cpu")
    assert flux.cfg == 1.0 and flux.guidance < FAMILIES["flux_dev"].guidance


def test_priorities_trade_steps(analyze):
    analysis = analyze("a lighthouse on a cliff")
    steps = {p: optimize(analysis, "sdxl", priority=p, device="cpu").steps for p in PRIORITIES}
    assert steps["speed"] < steps["balanced"] < steps["quality"]
    speed = optimize(analysis, "sdxl", priority="speed", device="cpu")
    assert speed.sampler_name == "dpmpp_2m"  # SDE sampler swapped out for speed
    low = optimize(analysis, "flux_dev", priority="low_vram", device="rtx3060_12gb")
    balanced = optimize(analysis, "flux_dev", priority="balanced", device="rtx3060_12gb")
    assert low.estimated_vram_gb < balanced.estimated_vram_gb
    assert any("fp8" in n for n in low.notes)


@pytest.mark.parametrize("aspect,check", [
    ("16:9", lambda w, h: w > h * 1.6), ("9:16", lambda w, h: h > w * 1.6), ("1:1", lambda w, h: w == h),
    ("3:4", lambda w, h: 0.7 < w / h < 0.8), ("16x9", lambda w, h: w > h * 1.6), ("1.5", lambda w, h: 1.4 < w / h < 1.6),
])
def test_explicit_aspect_ratios(aspect, check):
    plan = optimize(None, "sdxl", aspect_ratio=aspect, device="cpu")
    assert check(plan.width, plan.height), (plan.width, plan.height)
    assert (plan.width, plan.height) in FAMILIES["sdxl"].buckets


def test_auto_aspect_follows_the_content(analyze):
    landscape = optimize(analyze("a vast mountain landscape with a lake at sunrise"), "sdxl", device="cpu")
    portrait = optimize(analyze("portrait of an old fisherman, close-up"), "sdxl", device="cpu")
    assert landscape.width > landscape.height and portrait.height > portrait.width
    assert optimize(None, "flux_dev", device="cpu").width == 1024  # no analysis: square


@pytest.mark.parametrize("garbage", ["abc", "16:", ":9", "0:1", "-16:9", "nan", "inf:1", "16:9:1", "100:1", ""])
def test_aspect_ratio_garbage_is_a_clear_error(garbage):
    with pytest.raises(ParamsError, match="^aspect_ratio:"):
        optimize(None, "sdxl", aspect_ratio=garbage, device="cpu")


def test_auto_mode_ignores_overrides_and_says_so():
    plan = optimize(None, "sdxl", mode="AUTO", overrides={"steps": 12, "sampler_name": "auto"}, device="cpu")
    assert plan.steps == 30 and plan.overrides == {}
    assert any("AUTO mode ignores" in n and "steps" in n for n in plan.notes)


def test_assisted_mode_records_overrides_and_suggestions(analyze):
    analysis = analyze("a cat on a sofa")
    auto = optimize(analysis, "sdxl", device="cpu")
    plan = optimize(analysis, "sdxl", mode="ASSISTED", overrides={"steps": 22, "cfg": 4.5, "scheduler": None,
                                                                  "width": 896, "height": None}, device="cpu")
    assert (plan.steps, plan.cfg, plan.width) == (22, 4.5, 896)
    assert plan.height == auto.height and plan.scheduler == auto.scheduler
    assert plan.overrides == {"steps": 22, "cfg": 4.5, "width": 896}
    assert plan.suggested == {"steps": auto.steps, "cfg": auto.cfg, "width": auto.width}
    assert next(d for d in plan.decisions if d.field == "steps").reason == f"the optimizer suggested {auto.steps}; your override 22"


def test_manual_mode_uses_family_defaults_for_the_rest(analyze):
    analysis = analyze("a crowded battle scene, hundreds of soldiers, intricate armor, smoke, fire, detailed")
    plan = optimize(analysis, "sdxl", mode="manual", overrides={"cfg": 5.0}, device="cpu")
    assert plan.mode == "MANUAL" and plan.cfg == 5.0
    assert plan.steps == FAMILIES["sdxl"].steps["balanced"]  # no complexity adjustment
    assert (plan.width, plan.height) == (1024, 1024) and plan.overrides == {"cfg": 5.0}
    assert plan.estimated_seconds > 0


def test_learned_values_apply_before_overrides():
    plan = optimize(None, "sdxl", learned={"cfg": 5.5, "steps": 26}, device="cpu")
    assert (plan.cfg, plan.steps) == (5.5, 26)
    assert next(d for d in plan.decisions if d.field == "cfg").reason == "without learning 7; learned from your edits"
    plan = optimize(None, "sdxl", mode="ASSISTED", learned={"cfg": 5.5}, overrides={"cfg": 6.5}, device="cpu")
    assert plan.cfg == 6.5 and plan.suggested == {"cfg": 5.5}
    plan = optimize(None, "sdxl", mode="MANUAL", learned={"cfg": 5.5}, device="cpu")
    assert plan.cfg == FAMILIES["sdxl"].cfg


def test_bad_learned_values_are_skipped_with_a_note():
    plan = optimize(None, "sdxl", learned={"steps": -3, "sampler_name": "nope"}, device="cpu")
    assert plan.steps == 30 and plan.sampler_name == "dpmpp_2m_sde_gpu"
    assert sum("skipped a learned value" in n for n in plan.notes) == 2


@pytest.mark.parametrize("overrides,field", [
    ({"steps": 0}, "steps"), ({"steps": 500}, "steps"), ({"steps": 20.5}, "steps"), ({"steps": True}, "steps"),
    ({"cfg": 45.0}, "cfg"), ({"cfg": math.nan}, "cfg"), ({"cfg": "high"}, "cfg"),
    ({"width": 1001}, "width"), ({"width": 16}, "width"), ({"height": 100000}, "height"),
    ({"sampler_name": "euler_magic"}, "sampler_name"), ({"scheduler": "fast"}, "scheduler"),
    ({"clip_skip": 2}, "clip_skip"), ({"guidance": 3.5}, "guidance"), ({"seed": 1}, "seed"),
])
def test_out_of_range_overrides_name_the_input(overrides, field):
    with pytest.raises(ParamsError) as err:
        optimize(None, "sdxl", mode="ASSISTED", overrides=overrides, device="cpu")
    assert str(err.value).startswith(f"{field}:")


def test_sampler_choices_from_the_running_comfyui_are_accepted():
    plan = optimize(None, "sdxl", mode="MANUAL", overrides={"sampler_name": "res_2s"},
                    sampler_choices=[*KSAMPLER_SAMPLERS, "res_2s"], device="cpu")
    assert plan.sampler_name == "res_2s"


@pytest.mark.parametrize("kwargs,field", [
    ({"family": "sdxxl"}, "family"), ({"priority": "fastest"}, "priority"),
    ({"mode": "AUTOMATIC"}, "mode"), ({"device": "tpu"}, "device"),
])
def test_unknown_names_are_clear_errors(kwargs, field):
    args = {"family": "sdxl", "device": "cpu", **kwargs}
    with pytest.raises(ParamsError, match=f"^{field}:"):
        optimize(None, **args)


def test_plan_round_trips_through_json(analyze):
    plan = optimize(analyze("a cat"), "pony", mode="ASSISTED", overrides={"steps": 20}, device="rtx4090")
    data = json.loads(json.dumps(plan.to_dict()))
    for key in ("family", "steps", "cfg", "sampler_name", "scheduler", "width", "height",
                "estimated_vram_gb", "estimated_seconds"):
        assert key in data
    again = SamplingPlan.from_dict(data)
    assert again == plan


def test_framing_words_match_whole_words():
    from kubik_core.params.resolution import auto_aspect

    assert auto_aspect("unknown", "an outstanding castle")[0] == "1:1"
    assert auto_aspect("unknown", "a knight standing on a hill")[0] == "2:3"
    assert auto_aspect("portrait", "panoramic view of a valley")[0] == "21:9"
