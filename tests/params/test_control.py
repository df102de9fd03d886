"""ControlNet / IP-Adapter advice on real prompts: the makers' published values, with sources."""
from __future__ import annotations

import json

import pytest

from kubik_core.cli import main
from kubik_core.explain import explain
from kubik_core.params import ParamsError
from kubik_core.params.control import CONTROL_TYPES, SETTINGS, advise_control
from kubik_core.params.families import is_published
from kubik_core.prompting import analyze_prompt

DANCER = "portrait of a dancer in a red dress, full body, dynamic pose, studio lighting, photo"
VALLEY = "a misty mountain valley at dawn, pine forest, river, volumetric light, oil painting"
BATTLE = ("two knights fighting a dragon on a burning castle bridge at night, rain, lightning, "
          "dramatic rim light, crowd of soldiers watching, wide angle, highly detailed armor, embers, "
          "smoke, cinematic composition, volumetric fog, reflections in puddles, oil painting")
CAR = "a red vintage car parked on a street"


def _decision(advice, name):
    return next(d for d in advice.decisions if d.field == name)


@pytest.mark.parametrize("kind, strength, end", [("canny", 0.7, 0.8), ("softedge", 0.7, 0.8),
                                                 ("depth", 0.8, 0.8), ("pose", 0.9, 0.65),
                                                 ("gray", 0.9, 0.8)])
def test_flux_takes_union_pro_2_table(kind, strength, end):
    advice = advise_control(analyze_prompt(CAR), "flux_dev", kind)
    assert (advice.strength, advice.start_percent, advice.end_percent) == (strength, 0.0, end)
    for name in ("strength", "end_percent"):
        source = _decision(advice, name).source
        assert "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0" in source and is_published(source)


def test_sd15_takes_controlnet_11_defaults_and_labels_the_schedule_convention():
    advice = advise_control(analyze_prompt(CAR), "sd15", "depth")
    assert (advice.strength, advice.start_percent, advice.end_percent) == (1.0, 0.0, 1.0)
    assert "ControlNet-v1-1-nightly gradio_depth.py" in _decision(advice, "strength").source
    assert _decision(advice, "end_percent").source.startswith("convention")


def test_sdxl_cards_canny_and_pose_others_convention():
    canny = advise_control(analyze_prompt(CAR), "sdxl", "canny")
    pose = advise_control(analyze_prompt(DANCER), "pony", "pose")  # a fine-tune: the SDXL group
    depth = advise_control(analyze_prompt(VALLEY), "sdxl", "depth")
    assert canny.strength == 0.5 and "diffusers/controlnet-canny-sdxl-1.0" in _decision(canny, "strength").source
    assert pose.strength == 1.0 and "xinsir/controlnet-openpose-sdxl-1.0" in _decision(pose, "strength").source
    assert depth.strength == 0.5 and _decision(depth, "strength").source.startswith("convention")
    assert "published" not in _decision(depth, "strength").reason


def test_every_table_value_names_its_source_address():
    for group, table in SETTINGS.items():
        for kind, setting in table.items():
            assert kind in CONTROL_TYPES
            for source in (setting.strength_source, setting.schedule_source):
                assert "https://" in source or source.startswith("convention"), (group, kind, source)


def test_auto_type_follows_the_prompt():
    assert advise_control(analyze_prompt(DANCER), "flux_dev").control_type == "pose"
    assert advise_control(analyze_prompt(VALLEY), "sdxl").control_type == "depth"
    assert advise_control(analyze_prompt(CAR), "sd15").control_type == "canny"
    lineart = advise_control(analyze_prompt("a fox in a forest, anime style, line art"), "sd15")
    assert lineart.control_type == "lineart"
    assert _decision(lineart, "control_type").source.startswith("convention")


def test_detailed_prompt_ends_the_control_earlier_but_not_before_half():
    simple = advise_control(analyze_prompt(CAR), "flux_dev", "pose")
    detailed_analysis = analyze_prompt(BATTLE)
    assert detailed_analysis.complexity["overall"] >= 0.6
    detailed = advise_control(detailed_analysis, "flux_dev", "pose")
    assert simple.end_percent == 0.65 and detailed.end_percent == 0.55
    assert "detailed prompt" in _decision(detailed, "end_percent").reason
    # SD1.5 full schedule: 1.0 -> 0.9
    assert advise_control(detailed_analysis, "sd15", "canny").end_percent == 0.9


def test_ip_adapter_weight_from_the_readme():
    with_text = advise_control(analyze_prompt(DANCER), "sdxl", "canny")
    image_only = advise_control(None, "sdxl", "canny")
    forced = advise_control(analyze_prompt(DANCER), "sdxl", "canny", image_prompt_only=True)
    assert (with_text.ip_adapter_weight, image_only.ip_adapter_weight, forced.ip_adapter_weight) == (0.5, 1.0, 1.0)
    assert "tencent-ailab/IP-Adapter" in _decision(with_text, "ip_adapter_weight").source
    sd3 = advise_control(analyze_prompt(DANCER), "sd35_large", "canny")
    # InstantX's SD3.5 Large IP-Adapter: its card's 0.5, with or without text
    assert sd3.ip_adapter_weight == 0.5 and not any("starting point" in note for note in sd3.notes)
    assert _decision(sd3, "ip_adapter_weight").source.startswith("HF InstantX/SD3.5-Large-IP-Adapter model card")
    assert advise_control(None, "sd35_large", "canny").ip_adapter_weight == 0.5
    # XLabs' FLUX IP-Adapters: 1.0 with a text prompt too, from their own repository
    flux = advise_control(analyze_prompt(DANCER), "flux_dev", "canny")
    assert flux.ip_adapter_weight == 1.0 and not any("starting point" in note for note in flux.notes)
    assert _decision(flux, "ip_adapter_weight").source.startswith("XLabs-AI/x-flux main.py")


def test_a_controlnet_with_its_own_card():
    instantx = advise_control(analyze_prompt(CAR), "flux_dev", "canny",
                              controlnet_name="flux-instantx-canny.safetensors")
    assert (instantx.strength, instantx.end_percent) == (0.6, 1.0)
    assert "InstantX/FLUX.1-dev-Controlnet-Canny" in _decision(instantx, "strength").source
    v1 = advise_control(analyze_prompt(CAR), "flux_dev", "pose",
                        controlnet_name="FLUX.1-dev-ControlNet-Union-Pro.safetensors")
    assert v1.strength == 0.8 and "0.3-0.8" in _decision(v1, "strength").source


def test_missing_types_and_families_say_so():
    tile = advise_control(analyze_prompt(CAR), "flux_dev", "tile")
    assert tile.strength == 0.9 and any("no maker's tile ControlNet" in n for n in tile.notes)
    qwen = advise_control(analyze_prompt(CAR), "qwen_image", "canny")
    assert qwen.strength == 1.0 and _decision(qwen, "strength").source.startswith("convention")
    assert any("no ControlNet settings are published" in n for n in qwen.notes)


def test_sd3_values_come_from_stability_and_instantx():
    large = advise_control(analyze_prompt(CAR), "sd35_large", "depth",
                           controlnet_name="sd3.5_large_controlnet_depth.safetensors")
    assert (large.strength, large.start_percent, large.end_percent) == (1.0, 0.0, 1.0)
    assert _decision(large, "strength").source.startswith("Stability-AI/sd3.5 reference code")
    assert advise_control(analyze_prompt(CAR), "sd3", "pose").strength == 0.7
    instantx = advise_control(analyze_prompt(CAR), "sd3", "canny", controlnet_name="SD3-Controlnet-Canny.safetensors")
    assert instantx.strength == 0.7 and "InstantX/SD3-Controlnet-Canny" in _decision(instantx, "strength").source
    lineart = advise_control(analyze_prompt(CAR), "sd35_medium", "lineart")
    assert lineart.strength == 1.0 and any("no maker's lineart ControlNet" in n for n in lineart.notes)


def test_bad_input_names_the_input():
    with pytest.raises(ParamsError, match="^control_type: unknown control type 'blur'; choose auto"):
        advise_control(None, "sdxl", "blur")
    with pytest.raises(ParamsError, match="^family: unknown family"):
        advise_control(None, "sdxxl", "canny")


def test_advice_is_an_explain_section():
    advice = advise_control(analyze_prompt(DANCER), "flux_dev")
    text = explain(analyze_prompt(DANCER), None, "technical", sections=[advice])
    assert "Control\n- control_type = pose" in text and "[source: HF Shakker-Labs" in text
    assert "strength 0.9" in explain(None, None, "minimal", sections=[advice])


def test_cli_params_control_text_and_json(capsys):
    assert main(["params", DANCER, "--family", "flux_dev", "--control", "pose", "--device", "rtx4090"]) == 0
    out = capsys.readouterr().out
    assert "control    pose: strength 0.9, 0-0.65" in out and "ip-adapter weight 1" in out
    assert "Control\nPose ControlNet at strength 0.9" in out
    assert main(["params", VALLEY, "--family", "sdxl", "--control", "auto", "--device", "rtx4090",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["control"]["control_type"] == "depth" and data["control"]["strength"] == 0.5
    assert {d["field"] for d in data["control"]["decisions"]} == {
        "control_type", "strength", "start_percent", "end_percent", "ip_adapter_weight"}
    assert main(["params", CAR, "--device", "rtx4090", "--json"]) == 0
    assert "control" not in json.loads(capsys.readouterr().out)


def test_cli_explain_control_and_errors(capsys):
    assert main(["explain", CAR, "--family", "sd15", "--control", "canny", "--verbosity", "technical",
                 "--device", "rtx4090"]) == 0
    assert "gradio_canny.py" in capsys.readouterr().out
    assert main(["explain", CAR, "--controlnet", "x.safetensors"]) == 2
    err = capsys.readouterr().err
    assert "--controlnet needs --control" in err and "Traceback" not in err
