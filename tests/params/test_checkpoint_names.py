"""What a checkpoint's name says, read as words (issue 23): community Lightning/Turbo/Hyper merges
get their makers' sampler (DPM++ SDE Karras, CFG 1.5-2) rather than ByteDance's or Stability's
base recipe, a step count in the name sets the steps, Hyper-SDXL's one-step UNet gets its recipe,
and v-prediction checkpoints get Euler.

The names are written the way they are found on CivitAI and Hugging Face downloads (camelCase
model + version names, underscores, ALLCAPS runs, "fp16" suffixes); ComfyUI loads all of them as
SDXL, so the name is the only evidence.
"""
from __future__ import annotations

import json

import pytest

from kubik_core.cli import main
from kubik_core.params import ModelInfo, detect_family, optimize
from kubik_core.params.detect import name_words, read_name

# (file name, family, steps the name announces, sampler the name announces, v-prediction)
NAMES = [
    # community merges of a distillation: a model name of their own
    ("juggernautXL_v9Rdphoto2Lightning.safetensors", "sdxl_fast_merge", None, None, False),
    ("juggernautXL_juggXILightningByRD.safetensors", "sdxl_fast_merge", None, None, False),
    ("Juggernaut-XL_v9_RunDiffusionPhoto_v2_Lightning_4steps.safetensors", "sdxl_fast_merge", 4, None, False),
    ("realvisxlV40_v40LightningBakedvae.safetensors", "sdxl_fast_merge", None, None, False),
    ("RealVisXL_V5.0_Lightning_fp16.safetensors", "sdxl_fast_merge", None, None, False),
    ("dreamshaperXL_lightningDPMSDE.safetensors", "sdxl_fast_merge", None, "dpmpp_sde", False),
    ("dreamshaperXL_v21TurboDPMSDE.safetensors", "sdxl_fast_merge", None, "dpmpp_sde", False),
    ("albedobaseXL_v21Lightning8steps.safetensors", "sdxl_fast_merge", 8, None, False),
    ("wildcardxXLLIGHTNING_wildcardxXL.safetensors", "sdxl_fast_merge", None, None, False),
    ("copaxTimelessxlSDXL1_v122Hyper.safetensors", "sdxl_fast_merge", None, None, False),
    ("natvisNaturalVision_v25Lightning8step_euler.safetensors", "sdxl_fast_merge", 8, "euler", False),
    ("zavychromaxl_v80-Turbo-DPM-SDE.safetensors", "sdxl_fast_merge", None, "dpmpp_sde", False),
    # the distillers' own files
    ("sdxl_lightning_2step.safetensors", "sdxl_lightning", 2, None, False),
    ("sdxl_lightning_8step_unet.safetensors", "sdxl_lightning", 8, None, False),
    ("SDXLLIGHTNING_4STEP.safetensors", "sdxl_lightning", 4, None, False),
    ("Hyper-SDXL-12steps-CFG-lora-merged.safetensors", "sdxl_hyper", 12, None, False),
    ("Hyper-SDXL-1step-Unet.safetensors", "sdxl_hyper", 1, None, False),
    ("Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors", "sdxl_hyper", 1, None, False),
    ("sd_xl_turbo_1.0_fp16.safetensors", "sdxl_turbo", None, None, False),
    ("sdxl-lcm-full.safetensors", "sdxl_lcm", None, None, False),
    # no distillation, whatever the words look like
    ("epicrealismXL_vxviLastfameRealism.safetensors", "sdxl", None, None, False),
    ("hyperRealismXL_v20.safetensors", "sdxl", None, None, False),
    ("HyperRealistic-XL_v3.safetensors", "sdxl", None, None, False),
    ("sd_xl_base_1.0_0.9vae.safetensors", "sdxl", None, None, False),
    ("ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "pony", None, None, False),
    ("autismmixSDXL_autismmixPony.safetensors", "pony", None, None, False),
    ("waiNSFWIllustrious_v140.safetensors", "illustrious", None, None, False),
    ("illustriousXL_v01.safetensors", "illustrious", None, None, False),
    ("noobaiXLNAIXL_epsilonPred11Version.safetensors", "illustrious", None, None, False),
    # v-prediction
    ("noobaiXLNAIXL_vPred10Version.safetensors", "illustrious", None, None, True),
    ("NoobAI-XL-Vpred-v1.0.safetensors", "illustrious", None, None, True),
    ("noobai_v_prediction_0.75.safetensors", "illustrious", None, None, True),
    ("myAnimeMixXL_VPRED_v3.safetensors", "sdxl", None, None, True),
]


@pytest.mark.parametrize("name,family,steps,sampler,v_prediction", NAMES)
def test_names_are_read_as_words(name, family, steps, sampler, v_prediction):
    detection = detect_family(ModelInfo(model_class="SDXL", config_class="SDXL", checkpoint_name=name))
    assert (detection.family, detection.steps_hint, detection.sampler_hint, detection.v_prediction) == \
        (family, steps, sampler, v_prediction), detection.reason


def test_words_of_a_name():
    assert name_words("dreamshaperXL_lightningDPMSDE.safetensors") == (
        "dreamshaper", "xl", "lightning", "dpmsde", "safetensors")
    assert name_words("noobaiXLNAIXL_vPred10Version") == ("noobai", "xlnaixl", "v", "pred", "10", "version")
    reading = read_name("juggernautXL_v9Rdphoto2Lightning")
    assert reading.distillation == "lightning" and reading.merge and "juggernaut" in reading.own_words
    assert not read_name("sdxl_lightning_4step_unet").merge       # ByteDance's file: no model name


@pytest.mark.parametrize("name", [n for n, family, *_ in NAMES if family == "sdxl_fast_merge"])
def test_merges_get_their_makers_sampler_not_the_base_recipe(name, analyze):
    """DPM++ SDE Karras at CFG 1.5-2, as Juggernaut, RealVis and DreamShaper publish; Euler only
    where the name says so; the step count from the name, else 4-8."""
    reading = read_name(name)
    detection = detect_family(ModelInfo(config_class="SDXL", checkpoint_name=name))
    for priority in ("speed", "balanced", "quality"):
        for prompt in ("photo of a lighthouse at dusk", "anime girl, cel shading"):
            plan = optimize(analyze(prompt), detection.family, priority=priority, detection=detection,
                            device="rtx4090")
            expected = (reading.sampler or "dpmpp_sde", {"dpmpp_sde": "karras", "euler": "sgm_uniform"}[
                reading.sampler or "dpmpp_sde"])
            assert (plan.sampler_name, plan.scheduler) == expected
            assert 1.5 <= plan.cfg <= 2.0
            assert plan.steps == (reading.steps or {"speed": 4, "balanced": 6, "quality": 8}[priority])


def test_the_distillers_files_keep_their_recipes():
    lightning = detect_family(ModelInfo(config_class="SDXL", checkpoint_name="sdxl_lightning_2step.safetensors"))
    plan = optimize(None, lightning.family, detection=lightning, device="rtx4090")
    assert (plan.steps, plan.cfg, plan.sampler_name, plan.scheduler) == (2, 1.0, "euler", "sgm_uniform")
    turbo = detect_family(ModelInfo(config_class="SDXL", checkpoint_name="sd_xl_turbo_1.0_fp16.safetensors"))
    plan = optimize(None, turbo.family, detection=turbo, device="rtx4090")
    assert (plan.steps, plan.cfg, plan.sampler_name) == (1, 1.0, "euler_ancestral")


@pytest.mark.parametrize("priority", ["speed", "balanced", "quality"])
def test_hyper_sdxl_one_step_unet_gets_its_recipe(priority):
    detection = detect_family(ModelInfo(config_class="SDXL", checkpoint_name="Hyper-SDXL-1step-Unet.safetensors"))
    assert detection.recipe == "hyper_sdxl_1step"
    plan = optimize(None, detection.family, priority=priority, detection=detection, device="rtx4090")
    assert (plan.steps, plan.cfg, plan.sampler_name, plan.scheduler) == (1, 1.0, "lcm", "sgm_uniform")
    assert any("HyperSDXL1StepUnetScheduler" in note and "800" in note for note in plan.notes)
    steps = next(d for d in plan.decisions if d.field == "steps")
    assert "ByteDance/Hyper-SD" in steps.source and steps.reason.endswith(": 1")


def test_v_prediction_checkpoints_get_euler(analyze):
    anime = analyze("1girl, silver hair, school uniform, anime style, cel shading")
    for name in ("noobaiXLNAIXL_vPred10Version.safetensors", "myAnimeMixXL_VPRED_v3.safetensors"):
        detection = detect_family(ModelInfo(config_class="SDXL", checkpoint_name=name))
        plan = optimize(anime, detection.family, detection=detection, device="rtx4090")
        assert (plan.sampler_name, plan.scheduler) == ("euler", "normal"), name
        sampler = next(d for d in plan.decisions if d.field == "sampler_name")
        assert sampler.reason == "v-prediction checkpoint: euler instead of the ancestral euler_ancestral"
        assert any("ModelSamplingDiscrete" in note for note in plan.notes)
    eps = detect_family(ModelInfo(config_class="SDXL", checkpoint_name="illustriousXL_v01.safetensors"))
    assert optimize(anime, eps.family, detection=eps, device="rtx4090").sampler_name == "euler_ancestral"
    # ComfyUI's own model type says v-prediction even when the name does not
    typed = detect_family(ModelInfo(config_class="SDXL", model_type="V_PREDICTION", checkpoint_name="mix.safetensors"))
    assert typed.v_prediction and optimize(anime, typed.family, detection=typed, device="rtx4090").sampler_name == "euler"


def test_a_family_chosen_by_hand_still_reads_the_name():
    detection = detect_family(ModelInfo(config_class="SDXL", checkpoint_name="albedobaseXL_v21Lightning8steps.safetensors"),
                              "sdxl_lightning")
    assert detection.family == "sdxl_lightning" and detection.steps_hint == 8 and detection.confidence == 1.0


def test_the_command_line_reads_a_checkpoint_name(capsys):
    assert main(["params", "a lighthouse at dusk, photo", "--family", "auto", "--checkpoint",
                 "models/checkpoints/SDXL/realvisxlV40_v40LightningBakedvae.safetensors", "--device",
                 "rtx4090", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["family"], plan["sampler_name"], plan["scheduler"]) == ("sdxl_fast_merge", "dpmpp_sde", "karras")
    assert 1.5 <= plan["cfg"] <= 2.0 and 4 <= plan["steps"] <= 8
