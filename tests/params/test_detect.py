"""Family detection from ComfyUI-shaped MODEL objects, checkpoint names and metadata."""
from __future__ import annotations

import pytest

from kubik_core.params import ModelInfo, ParamsError, detect_family, optimize

# (model_base classes most derived first, config class, unet_config, model_type, checkpoint) -> family
CASES = [
    (["SDXL", "BaseModel"], "SDXL", {"context_dim": 2048}, "EPS", "sd_xl_base_1.0.safetensors", "sdxl"),
    (["BaseModel"], "SD15", {"context_dim": 768}, "EPS", "v1-5-pruned-emaonly.safetensors", "sd15"),
    (["BaseModel"], "SD20", {"context_dim": 1024}, "V_PREDICTION", "v2-1_768.safetensors", "sd2"),
    (["Flux", "BaseModel"], "Flux", {"guidance_embed": True}, "FLUX" if False else "FLOW", "flux1-dev.safetensors", "flux_dev"),
    (["Flux", "BaseModel"], "FluxSchnell", {"guidance_embed": False}, "FLOW", "x.safetensors", "flux_schnell"),
    (["Flux", "BaseModel"], "Flux", {"guidance_embed": False}, "FLOW", "x.safetensors", "flux_schnell"),
    (["Flux2", "Flux", "BaseModel"], "Flux2", {"hidden_size": 6144}, "FLOW", "flux2_dev.safetensors", "flux2"),
    (["Flux2", "Flux", "BaseModel"], "Flux2", {"hidden_size": 3072}, "FLOW", "model.safetensors", "flux2_klein"),
    (["Chroma", "Flux", "BaseModel"], "Chroma", {}, "FLOW", "chroma.safetensors", "chroma"),
    (["SD3", "BaseModel"], "SD3", {"depth": 24}, "FLOW", "sd3_medium.safetensors", "sd3"),
    (["SD3", "BaseModel"], "SD3", {"depth": 38}, "FLOW", "sd3.5_large.safetensors", "sd35_large"),
    (["SD3", "BaseModel"], "SD3", {"depth": 38}, "FLOW", "sd3.5_large_turbo.safetensors", "sd35_large_turbo"),
    (["SD3", "BaseModel"], "SD3", {"depth": 24, "x_block_self_attn_layers": [0, 1, 2]}, "FLOW", "m.safetensors", "sd35_medium"),
    (["Lumina2", "BaseModel"], "Lumina2", {}, "FLOW", "lumina.safetensors", "lumina2"),
    (["Lumina2", "BaseModel"], "ZImage", {"dim": 3840}, "FLOW", "z_image_turbo_bf16.safetensors", "z_image_turbo"),
    (["Lumina2", "BaseModel"], "ZImage", {"dim": 3840}, "FLOW", "z_image_bf16.safetensors", "z_image"),
    (["Flux2", "Flux", "BaseModel"], "Flux2", {"hidden_size": 4096}, "FLOW", "flux-2-klein-base-9b.safetensors", "flux2_klein_base"),
    (["QwenImage", "BaseModel"], "QwenImage", {}, "FLOW", "qwen.safetensors", "qwen_image"),
    (["HiDream", "BaseModel"], "HiDream", {}, "FLOW", "hidream_i1_dev_fp8.safetensors", "hidream_dev"),
    (["AuraFlow", "BaseModel"], "AuraFlow", {}, "FLOW", "aura.safetensors", "auraflow"),
    (["HunyuanDiT", "BaseModel"], "HunyuanDiT1", {}, "EPS", "hy.safetensors", "hunyuan_dit"),
    (["StableCascade_C", "BaseModel"], "Stable_Cascade_C", {}, "STABLE_CASCADE", "c.safetensors", "stable_cascade"),
    # SDXL look-alikes: ComfyUI loads them all as SDXL
    (["SDXL", "BaseModel"], "SDXL", {}, "EPS", "ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "pony"),
    (["SDXL", "BaseModel"], "SDXL", {}, "EPS", "illustriousXL_v01.safetensors", "illustrious"),
    (["SDXL", "BaseModel"], "SDXL", {}, "V_PREDICTION", "noobaiXLNAIXL_vPred10Version.safetensors", "illustrious"),
    (["SDXL", "BaseModel"], "SDXL", {}, "EPS", "sd_xl_turbo_1.0_fp16.safetensors", "sdxl_turbo"),
    (["SDXL", "BaseModel"], "SDXL", {}, "EPS", "sdxl_lightning_4step.safetensors", "sdxl_lightning"),
    (["SDXL", "BaseModel"], "SDXL", {}, "EPS", "Hyper-SDXL-8steps.safetensors", "sdxl_hyper"),
    (["SDXL", "BaseModel"], "SDXL", {}, "EPS", "sdxl_lcm_merged.safetensors", "sdxl_lcm"),
    (["SDXL", "BaseModel"], "SDXL", {}, "EDM", "anything.safetensors", "playground25"),
]


@pytest.mark.parametrize("classes,config,unet,model_type,ckpt,expected", CASES)
def test_detects_family_from_comfyui_shapes(make_model, bridge, classes, config, unet, model_type, ckpt, expected):
    info = bridge.describe_model_for_params(make_model(classes, config, unet, model_type))
    info.checkpoint_name = ckpt
    detection = detect_family(info)
    assert detection.family == expected, detection.reason
    assert 0.5 <= detection.confidence <= 0.9 and detection.reason


def test_flux2_subclass_is_seen_before_flux(make_model, bridge):
    """A config class we do not know, but the model class is Flux2 (a subclass of Flux)."""
    info = bridge.describe_model_for_params(make_model(["Flux2", "Flux", "BaseModel"], "Flux2Future", {}, "FLOW"))
    assert detect_family(info).family == "flux2"
    info = bridge.describe_model_for_params(make_model(["Chroma", "Flux", "BaseModel"], "ChromaNext", {}, "FLOW"))
    assert detect_family(info).family == "chroma"


def test_metadata_beats_a_neutral_file_name():
    info = ModelInfo(model_class="SDXL", config_class="SDXL", checkpoint_name="model_0042.safetensors",
                     metadata={"modelspec.title": "Pony Diffusion V6 XL", "modelspec.architecture": "stable-diffusion-xl-v1-base"})
    detection = detect_family(info)
    assert detection.family == "pony" and "metadata" in detection.reason


def test_lightning_step_count_comes_from_the_name():
    info = ModelInfo(config_class="SDXL", checkpoint_name="sdxl_lightning_8step_unet.safetensors")
    detection = detect_family(info)
    assert detection.family == "sdxl_lightning" and detection.steps_hint == 8
    plan = optimize(None, detection.family, detection=detection, device="cpu")
    assert plan.steps == 8 and plan.cfg == 1.0 and plan.sampler_name == "euler"


@pytest.mark.parametrize("classes,config,model_type,expected", [
    (["Mystery", "BaseModel"], "MysteryConfig", "EPS", "sdxl"),
    (["Mystery", "BaseModel"], "MysteryConfig", "FLOW", "generic_flow"),
    (["WAN21", "BaseModel"], "WAN21_T2V", "FLOW", "generic_flow"),
])
def test_unknown_model_falls_back_with_zero_confidence(make_model, bridge, classes, config, model_type, expected):
    info = bridge.describe_model_for_params(make_model(classes, config, {}, model_type))
    detection = detect_family(info)
    assert detection.family == expected and detection.confidence == 0.0
    assert "family input" in detection.reason
    plan = optimize(None, detection.family, detection=detection, device="cpu")
    assert plan.family_confidence == 0.0 and plan.steps > 0


def test_name_and_metadata_only(tmp_path):
    assert detect_family(ModelInfo(checkpoint_name="flux1-schnell-fp8.safetensors")).family == "flux_schnell"
    assert detect_family(ModelInfo(checkpoint_name="juggernautXL_v9.safetensors")).family == "sdxl"
    assert detect_family(ModelInfo(metadata={"ss_base_model_version": "sd_v1"})).family == "sd15"
    assert detect_family(ModelInfo(checkpoint_name="model.safetensors")).confidence == 0.0


def test_family_hint_wins_and_is_validated():
    info = ModelInfo(config_class="Flux")
    assert detect_family(info, "sdxl").family == "sdxl"
    with pytest.raises(ParamsError, match="family: unknown family 'fluxx'"):
        detect_family(info, "fluxx")


def test_no_information_is_a_documented_fallback():
    detection = detect_family(None)
    assert detection.family == "sdxl" and detection.confidence == 0.0
