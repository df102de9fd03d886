"""The family table: every entry usable in KSampler, sourced, and internally consistent."""
from __future__ import annotations

import pytest

from kubik_core.params import FAMILIES, FAMILY_IDS, ParamsError, get_family
from kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS

REQUIRED_IDS = {"sd15", "sd2", "sdxl", "sdxl_turbo", "sdxl_lightning", "sdxl_hyper", "sdxl_lcm",
                "pony", "illustrious", "playground25", "sd3", "sd35_large", "sd35_large_turbo",
                "sd35_medium", "flux_dev", "flux_schnell", "flux2", "chroma", "lumina2", "qwen_image"}


def test_contract_ids_present():
    assert REQUIRED_IDS <= set(FAMILY_IDS)


@pytest.mark.parametrize("family_id", FAMILY_IDS)
def test_profile_is_consistent(family_id):
    p = FAMILIES[family_id]
    assert p.sampler in KSAMPLER_SAMPLERS and p.scheduler in KSAMPLER_SCHEDULERS
    if p.stylized_sampler:
        assert p.stylized_sampler in KSAMPLER_SAMPLERS
    for key in ("resolution", "steps", "cfg", "sampler", "size", "memory"):
        assert p.sources.get(key, "").strip(), f"{family_id}: no source for {key}"
    if p.guidance is not None:
        assert p.sources.get("guidance") and p.cfg == 1.0, "guidance-distilled models sample at CFG 1"
    if p.clip_skip is not None:
        assert p.sources.get("clip_skip")
    low, high = p.steps_range
    assert all(low <= p.steps[k] <= high for k in ("quality", "balanced", "speed"))
    assert p.steps["speed"] <= p.steps["balanced"] <= p.steps["quality"]
    assert p.cfg_range[0] <= p.cfg <= p.cfg_range[1]
    if p.distilled:  # step-distilled: little or no CFG (ByteDance's own files 1, community merges 1.5-2)
        assert p.cfg_range[1] <= 2.0
    if p.stylized_scheduler:
        assert p.stylized_scheduler in KSAMPLER_SCHEDULERS and p.stylized_sampler
    for priority in ("quality", "speed"):
        assert p.steps_source(priority).strip(), f"{family_id}: no source for the {priority} steps"
    for w, h in p.buckets:
        assert w % 16 == 0 and h % 16 == 0, f"{family_id}: {w}x{h} must fit an x8 VAE with patch 2"
        assert 0.5 < (w * h) / p.native_area <= 2.25, f"{family_id}: bucket {w}x{h} far from native area"
    assert p.params_b > 0 and p.text_encoder_b > 0 and p.memory_usage_factor > 0


def test_core_sampler_lists_match_comfyui_ksampler():
    """Our copy equals KSampler's combos as ComfyUI 0.8.0 lists them (tests/kubik_testing/core_nodes.json)."""
    import json

    from kubik_testing.pack import REPO

    ksampler = json.loads((REPO / "tests" / "kubik_testing" / "core_nodes.json").read_text())["nodes"]["KSampler"]
    assert list(KSAMPLER_SAMPLERS) == ksampler["inputs"]["sampler_name"]["options"]
    assert list(KSAMPLER_SCHEDULERS) == ksampler["inputs"]["scheduler"]["options"]


def test_groups_for_lora_compatibility():
    assert {FAMILIES[f].group for f in ("sdxl", "pony", "illustrious", "sdxl_lightning")} == {"sdxl"}
    assert FAMILIES["flux_dev"].group == FAMILIES["flux_schnell"].group == "flux"
    assert FAMILIES["flux2"].group == "flux2" and FAMILIES["sd15"].group == "sd1"


def test_unknown_family_name_lists_valid_ids():
    with pytest.raises(ParamsError) as err:
        get_family("sdxxl")
    message = str(err.value)
    assert message.startswith("family:") and "sdxl" in message and "flux_dev" in message


def test_family_names_are_normalised():
    assert get_family("SD3.5-Large").id == "sd35_large"
    assert get_family("flux-dev").id == "flux_dev"
