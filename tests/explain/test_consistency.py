"""Explanations agree with the values (issue 23): for a corpus of prompts x families x priorities
(and the checkpoint names that change a plan), every decision's reason ends with the value the plan
uses, "published" labels only values the family table takes from a maker or reference tool, the
scheduler's reason names the sampler chosen, the clip-skip reason says what CLIPSetLastLayer does
in ComfyUI, and a plan at CFG 1 offers no negative prompt."""
from __future__ import annotations

import re

import pytest

from kubik_core.explain import explain
from kubik_core.params import FAMILIES, FAMILY_IDS, PRIORITIES, ModelInfo, detect_family, optimize
from kubik_core.params.families import is_published
from kubik_core.prompting import analyze_prompt

PROMPTS = (
    "a red apple on a table",
    "cinematic close-up portrait of an old fisherman, soft window light",
    "cinematic film still of a detective in the rain, neon lights",
    "anime girl with silver hair, cel shading, school uniform, cherry blossoms",
    "masterpiece, best quality, 1girl, solo, looking at viewer, upper body",
    "score_9, score_8_up, score_7_up, a fox knight in armor, full body",
    "a vast mountain landscape with a lake at sunrise, wide shot",
    "oil painting of a harbor at dusk, impressionism, thick brush strokes",
    "isometric pixel art of a cozy tavern interior",
    "product photo of a perfume bottle on black glass, studio lighting",
    "a crowded cyberpunk street market at night, dozens of people, holograms, rain, reflections, "
    "highly detailed, volumetric fog, wide angle",
    "watercolor illustration of a fox in a snowy forest",
    "3d render of a cute robot, octane render, soft lighting",
    "a medieval castle on a cliff, panoramic view, dramatic clouds",
    "(portrait:1.3) of a woman by the window, natural window light, film grain",
    "comic book cover, superhero landing, halftone",
    "macro photo of a dew drop on a leaf, shallow depth of field",
    "a cat",
)
NAMES = ("juggernautXL_v9Rdphoto2Lightning.safetensors", "dreamshaperXL_lightningDPMSDE.safetensors",
         "Hyper-SDXL-1step-Unet.safetensors", "sdxl_lightning_4step_unet.safetensors",
         "noobaiXLNAIXL_vPred10Version.safetensors", "realvisxlV40_v40LightningBakedvae.safetensors")

# Every way a reason may say "published", with the table value it must equal.
PUBLISHED = (
    (re.compile(r"(\d+) steps \(published\)"), "steps"),
    (re.compile(r"published CFG ([\d.]+)"), "cfg"),
    (re.compile(r"published guidance ([\d.]+)"), "guidance"),
    (re.compile(r"published sampler (\w+)"), "sampler"),
    (re.compile(r"published scheduler (\w+) with (\w+)"), "scheduler"),
    (re.compile(r"published clip skip (\d+)"), "clip_skip"),
)


@pytest.fixture(scope="module")
def analyses():
    return {prompt: analyze_prompt(prompt) for prompt in PROMPTS}


def _plans(analyses):
    for prompt, analysis in analyses.items():
        for family in FAMILY_IDS:
            for priority in PRIORITIES:
                yield prompt, None, optimize(analysis, family, priority=priority, device="rtx4090")
        for name in NAMES:
            detection = detect_family(ModelInfo(config_class="SDXL", checkpoint_name=name))
            for priority in PRIORITIES:
                yield prompt, detection, optimize(analysis, detection.family, priority=priority,
                                                  detection=detection, device="rtx4090")


def _stated(value) -> re.Pattern:
    """The value as a reason writes it, standing alone (not part of a longer number or name)."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.compile(rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)")


def _published_value(profile, field: str, plan, detection):
    if field == "steps":
        if detection is not None and detection.steps_hint:
            return None                                   # the name's count is never called published
        return profile.steps_for(plan.priority)
    return {"cfg": profile.cfg, "guidance": profile.guidance, "sampler": profile.sampler,
            "scheduler": profile.scheduler, "clip_skip": profile.clip_skip}[field]


def _source_key(field: str, priority: str) -> str:
    if field == "steps":
        return f"steps_{priority}" if priority in ("quality", "speed") else "steps"
    return {"scheduler": "sampler"}.get(field, field)


def test_every_reason_states_its_value_and_published_means_published(analyses):
    checked = 0
    for prompt, detection, plan in _plans(analyses):
        profile = FAMILIES[plan.family]
        for decision in plan.decisions:
            if decision.field == "family":
                continue
            last = decision.reason.rsplit("; ", 1)[-1]
            if decision.field in ("width", "height"):
                assert last.endswith(f": {plan.width}x{plan.height}"), (plan.family, decision)
            else:
                assert _stated(decision.value).search(last), (plan.family, plan.priority, prompt, decision)
            found = 0
            for pattern, field in PUBLISHED:
                for match in pattern.finditer(decision.reason):
                    found += 1
                    stated = match.group(1)
                    table = _published_value(profile, field, plan, detection)
                    if field == "clip_skip":
                        stated = -int(stated)
                    assert table is not None and _stated(table).fullmatch(str(stated)) or table == stated, \
                        (plan.family, decision.reason)
                    key = _source_key(field, plan.priority)
                    source = profile.sources.get(key, profile.sources.get("steps" if field == "steps" else key, ""))
                    assert is_published(source), (plan.family, field, source)
                    if field == "scheduler":
                        assert match.group(2) == profile.sampler
            assert decision.reason.count("published") == found, (plan.family, decision.reason)
            if found:
                assert is_published(decision.source), (plan.family, decision)
            checked += 1
    assert checked > 10_000


def test_the_scheduler_reason_names_the_sampler_chosen(analyses):
    for prompt, detection, plan in _plans(analyses):
        scheduler = next(d for d in plan.decisions if d.field == "scheduler")
        assert re.search(rf"(?<!\w){plan.sampler_name}(?!\w)", scheduler.reason), (plan.family, scheduler.reason)


def test_the_clip_skip_reason_says_what_it_does_in_comfyui(analyses):
    for family in ("pony", "illustrious"):
        plan = optimize(analyses["a cat"], family, device="rtx4090")
        reason = next(d.reason for d in plan.decisions if d.field == "clip_skip")
        assert reason.startswith("CLIPSetLastLayer -2: ")
        assert "second-to-last layer" in reason and "comfy/sdxl_clip.py" in reason
        assert "changes nothing" in reason


def test_a_plan_at_cfg_1_offers_no_negative_prompt(analyses):
    analysis = analyses[PROMPTS[1]]
    assert analysis.negative.count(",") > 10                        # the analysis has a long one
    for family in ("flux_dev", "flux_schnell", "sdxl_lightning", "z_image_turbo"):
        plan = optimize(analysis, family, device="rtx4090")
        assert plan.cfg == 1.0
        text = explain(analysis, plan, "detailed")
        assert "proposed negative prompt" not in text and analysis.negative not in text
        assert f"- negative prompt: none proposed; at CFG 1 {family} makes no negative pass" in text
    sdxl = explain(analysis, optimize(analysis, "sdxl", device="rtx4090"), "detailed")
    assert f"- proposed negative prompt: {analysis.negative}" in sdxl


def test_manual_and_assisted_reasons_state_their_values():
    analysis = analyze_prompt("a cat on a sofa")
    manual = optimize(analysis, "pony", mode="MANUAL", overrides={"cfg": 6.5}, device="rtx4090")
    assisted = optimize(analysis, "flux_dev", mode="ASSISTED", overrides={"steps": 12, "guidance": 2.5},
                        device="rtx4090")
    for plan in (manual, assisted):
        for decision in plan.decisions:
            if decision.field not in ("width", "height"):
                assert _stated(decision.value).search(decision.reason.rsplit("; ", 1)[-1]), decision
    assert next(d for d in manual.decisions if d.field == "cfg").reason == "your value 6.5 (MANUAL mode)"
