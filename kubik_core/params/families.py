"""Model families and their published sampling recommendations.

One ``FamilyProfile`` per family id. Family ids are a contract shared with other capabilities
(LoRA compatibility uses ``group``), so ids are never renamed. Every recommended value carries
its source in ``sources`` right beside it: a model card, a repository file, or a ComfyUI
file:line. Where a value is only a community habit the source says "convention".

Conventions used in the table:

* ``cfg`` is ComfyUI's KSampler CFG. A diffusers ``guidance_scale`` of 0 (guidance disabled,
  as on distilled models) is CFG 1.0 in ComfyUI. ``guidance`` is the *distilled* guidance that
  Flux-style models take through ComfyUI's FluxGuidance node; None where the model has none.
* ``steps`` holds the step count for the quality, balanced and speed priorities; low_vram uses
  the balanced count (memory does not depend on the step count). Balanced is the maker's or
  ComfyUI's own published default. Quality is the count past which the comparisons cited show
  no further gain, never below balanced: 40 for UNet models (SD1.5, SD2, SDXL and its
  fine-tunes), 30 for flow-matching transformers sampled with Euler, unless the maker publishes
  another figure for its model. It used to follow Fooocus' "Quality" preset and the cards'
  diffusers examples (60 for SDXL, 50 for FLUX and Qwen-Image), about twice what ComfyUI users
  run for no visible gain (issue 23). Quality comes from the sampler and scheduler the maker
  publishes, not from more steps. ``sources["steps"]`` is the source of the balanced count,
  ``sources["steps_quality"]`` / ``["steps_speed"]`` of the others where they differ.
* ``buckets`` are (width, height) pairs the model was trained on, or, for models trained on
  arbitrary sizes near one megapixel, sizes generated at ``native_area`` in multiples the
  model's latent grid needs.
* Sizes of the model (``params_b`` etc., in billions of parameters) and ComfyUI's
  ``memory_usage_factor`` feed the VRAM/time estimate (see estimate.py).

Sources abbreviated below:
  CU  = ComfyUI 0.8.0 source (comfy/supported_models.py, comfy/sdxl_clip.py, ...)
  FO  = lllyasviel/Fooocus (presets/*.json, modules/flags.py, modules/async_worker.py)
  HF  = https://huggingface.co/<repo> model card
  CE  = https://comfyanonymous.github.io/ComfyUI_examples/<page>
  CT  = Comfy-Org's official ComfyUI workflow template for the model (its KSampler defaults, as
        recorded by third-party preset registries that mirror the templates)
  CE  images are read at comfyanonymous/ComfyUI_examples commit f9431bb (2025-11-26): the
        workflow each example PNG embeds (KSampler or BasicScheduler steps, cfg, sampler).

A source that starts with "convention" or "community practice" is no maker's figure; the
optimizer's reasons call only the others "published".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from .errors import ParamsError


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so lookups can be cached
class FamilyProfile:
    """Everything the optimizer and the estimator know about one model family."""

    id: str
    label: str
    group: str                      # base architecture, for LoRA compatibility ("sd1", "sdxl", "flux"...)
    latent_channels: int
    buckets: tuple[tuple[int, int], ...]
    native_area: int                # the training resolution's pixel count
    steps: Mapping[str, int]        # "quality" / "balanced" / "speed"
    steps_range: tuple[int, int]    # what the optimizer may move to with prompt complexity
    cfg: float
    cfg_range: tuple[float, float]  # style adjustments stay inside; equal bounds = fixed
    sampler: str
    scheduler: str
    sources: Mapping[str, str]
    guidance: float | None = None
    clip_skip: int | None = None
    distilled: bool = False         # step count fixed by distillation: never scaled by complexity
    stylized_sampler: str | None = None  # sampler for anime/illustration styles, where the card says so
    stylized_scheduler: str | None = None  # the scheduler that goes with it (default: ``scheduler``)
    params_b: float = 0.0           # diffusion model (UNet / DiT)
    text_encoder_b: float = 0.0
    vae_b: float = 0.08
    memory_usage_factor: float = 1.0  # CU supported_models.py, used as in model_base.memory_required
    pixels_per_token: int = 256     # image pixels per transformer token (VAE x8, patch 2 -> 256);
                                    # UNets: the figure matching their counted FLOPs (estimate.py)
    latent_scale: int = 8           # image pixels per latent pixel along one side
    fp8_release: bool = False       # an official or widely used fp8 checkpoint exists
    notes: tuple[str, ...] = field(default_factory=tuple)

    def steps_for(self, priority: str) -> int:
        return self.steps["balanced" if priority == "low_vram" else priority]

    def steps_source(self, priority: str) -> str:
        """The source of the step count of ``priority`` (see the module docstring)."""
        return self.sources.get(f"steps_{priority}", self.sources["steps"])

    def published(self, key: str) -> bool:
        """Whether ``sources[key]`` names a maker's or a reference tool's figure rather than a
        convention or community practice."""
        return is_published(self.sources.get(key, "convention"))


def is_published(source: str) -> bool:
    """A source that is no convention, community practice, assumption or user edit."""
    return not source.lower().startswith(("convention", "community practice", "assumption", "kubik", "your"))


@dataclass(frozen=True)
class Recipe:
    """Settings a specific checkpoint needs beyond its family's (detect.py sets ``recipe``)."""

    label: str
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    source: str
    note: str


RECIPES: dict[str, Recipe] = {
    "hyper_sdxl_1step": Recipe(
        "Hyper-SDXL one-step UNet", steps=1, cfg=1.0, sampler="lcm", scheduler="sgm_uniform",
        source=("HF ByteDance/Hyper-SD (Hyper-SDXL-1step-Unet: LCMScheduler, num_inference_steps=1, "
                "guidance_scale=0, timesteps=[800]; comfyui/ComfyUI-HyperSDXL1StepUnetScheduler)"),
        note=("Hyper-SDXL 1-step UNet: the card starts its single step at timestep 800 through its own "
              "HyperSDXL1StepUnetScheduler node (Hyper-SD repository, comfyui folder) in SamplerCustom; "
              "KSampler's sgm_uniform starts at 999, which works but is softer")),
}


# ------------------------------------------------------------------ resolution buckets
# FO modules/flags.py sdxl_aspect_ratios (width*height, all ~1 MP, multiples of 64).
_SDXL_BUCKETS = (
    (704, 1408), (704, 1344), (768, 1344), (768, 1280), (832, 1216), (832, 1152), (896, 1152),
    (896, 1088), (960, 1088), (960, 1024), (1024, 1024), (1024, 960), (1088, 960), (1088, 896),
    (1152, 896), (1152, 832), (1216, 832), (1280, 768), (1344, 768), (1344, 704), (1408, 704),
    (1472, 704), (1536, 640), (1600, 640), (1664, 576), (1728, 576),
)
# FO modules/flags.py sd15_aspect_ratios.
_SD15_BUCKETS = (
    (512, 768), (512, 704), (576, 704), (576, 640), (640, 640), (640, 576), (704, 576),
    (704, 512), (768, 512), (512, 512), (768, 768), (896, 512), (512, 896), (1024, 512),
    (512, 1024),
)
# HF Tencent-Hunyuan/HunyuanDiT: supported shapes listed in the card.
_HUNYUAN_DIT_BUCKETS = (
    (1024, 1024), (1280, 1280), (1024, 768), (1152, 864), (1280, 960), (768, 1024),
    (864, 1152), (960, 1280), (1280, 768), (768, 1280),
)
# HF Qwen/Qwen-Image: the card's aspect_ratios table; 1140 rounded to 1136 so both sides
# are multiples of 16 (the VAE x8 and the patch 2 need it).
_QWEN_BUCKETS = (
    (1328, 1328), (1664, 928), (928, 1664), (1472, 1136), (1136, 1472), (1584, 1056),
    (1056, 1584),
)
# Aspect ratios generated for models trained on arbitrary sizes around one area.
_GENERATED_RATIOS = ((1, 1), (5, 4), (4, 3), (3, 2), (16, 9), (2, 1), (21, 9))


def generated_buckets(area: int, multiple: int) -> tuple[tuple[int, int], ...]:
    """Sizes near ``area`` pixels for each ratio of _GENERATED_RATIOS and its transpose."""
    sizes: list[tuple[int, int]] = []
    for a, b in _GENERATED_RATIOS:
        for rw, rh in ((a, b), (b, a)):
            ratio = rw / rh
            w = max(multiple, round(math.sqrt(area * ratio) / multiple) * multiple)
            h = max(multiple, round(math.sqrt(area / ratio) / multiple) * multiple)
            if (w, h) not in sizes:
                sizes.append((w, h))
    return tuple(sizes)


_MP1_64 = generated_buckets(1024 * 1024, 64)
_MP1_16 = generated_buckets(1024 * 1024, 16)

# ------------------------------------------------------------------ shared source strings
_FO_SAI = "FO presets/sai.json (default_cfg_scale 7.0, dpmpp_2m_sde_gpu, karras)"
_FO_STEPS = "FO modules/flags.py Steps (QUALITY 60, SPEED 30, EXTREME_SPEED 8, LIGHTNING 4, HYPER_SD 4)"
_SDXL_CARD = "HF stabilityai/stable-diffusion-xl-base-1.0 (1024x1024; UNet 2.6B, text encoders 0.8B per the SDXL paper)"
_CU_SDXL_MEM = "CU comfy/supported_models.py:198 memory_usage_factor 0.8"
_CU_SDXL_CLIP = "CU comfy/sdxl_clip.py:44 (ComfyUI's SDXL encoders already read the penultimate layer)"
_FLOW_SAMPLER = "convention: euler + simple is ComfyUI's flow-matching default (CE flux, sd3)"
# Where more steps stop paying, per model kind (issue 23).
_UNET_QUALITY = ("community practice: 20-30 steps suffice with DPM++ samplers and 'above 40-50 steps, "
                 "improvements are often barely noticeable' (stablehub.aid-lab.hfg-gmuend.de/"
                 "guided-tutorial/core-parameters); SDE and ancestral samplers do best from 30 steps "
                 "(xxiiyu.github.io/imagegen-tech/Sampling/07_tldr_usage, 'SDXL - What Works at "
                 "Various Step Counts')")
_FLOW_QUALITY = ("community practice: ComfyUI's own examples run flow-matching models with Euler at "
                 "20-30 steps (CE flux/flux_dev_example.png 20, flux2/flux2_example.png 20, "
                 "qwen_image/qwen_image_basic_example.png 20, chroma/chroma_example.png 30, "
                 "hidream/hidream_full_example.png 30), diffusers' FluxPipeline defaults to 28 "
                 "(src/diffusers/pipelines/flux/pipeline_flux.py, written with Black Forest Labs); "
                 "the cards' 50-step examples cost about twice that for no visible gain")
_LIGHTNING_MERGES = ("HF RunDiffusion/Juggernaut-XL-Lightning (DPM++ SDE or DPM++ SDE Karras, 5-7 steps, "
                     "CFG 1.5-2); civitai.com/models/112902 DreamShaper XL (Lightning: 3-6 steps, CFG 2, "
                     "'should also work only with DPM++ SDE Karras'; Turbo: 4-8 steps, CFG 2); "
                     "HF SG161222/RealVisXL_V4.0_Lightning (4+ steps, CFG 1-2)")

_SDXL_SIZES = dict(latent_channels=4, buckets=_SDXL_BUCKETS, native_area=1024 * 1024,
                   params_b=2.57, text_encoder_b=0.82, vae_b=0.084, memory_usage_factor=0.8,
                   pixels_per_token=768)


def _profiles() -> tuple[FamilyProfile, ...]:
    return (
        FamilyProfile(
            id="sd15", label="Stable Diffusion 1.5", group="sd1", latent_channels=4,
            buckets=_SD15_BUCKETS, native_area=512 * 512,
            steps={"quality": 40, "balanced": 25, "speed": 15}, steps_range=(12, 50),
            cfg=7.0, cfg_range=(5.5, 8.5), sampler="dpmpp_2m", scheduler="karras",
            params_b=0.86, text_encoder_b=0.123, vae_b=0.084, memory_usage_factor=1.0,
            pixels_per_token=561,
            sources={
                "resolution": "HF stable-diffusion-v1-5/stable-diffusion-v1-5 (trained at 512x512); buckets FO modules/flags.py sd15_aspect_ratios",
                "steps": "convention (A1111 default 20, diffusers default 50)",
                "steps_quality": _UNET_QUALITY,
                "cfg": "diffusers StableDiffusionPipeline guidance_scale default 7.5; 7 is A1111's default (convention)",
                "sampler": "convention (DPM++ 2M Karras, the common A1111/ComfyUI pick for SD1.5)",
                "size": "CompVis/stable-diffusion README (860M UNet, 123M text encoder)",
                "memory": "CU comfy/supported_models.py:48 memory_usage_factor 1.0",
                "flops": "torch.utils.flop_counter on CU comfy/ldm/modules/diffusionmodules/openaimodel.py UNetModel (SD15 config of comfy/model_detection.py): 0.80 TFLOP per 512x512 evaluation -> 561 pixels per token",
            }),
        FamilyProfile(
            id="sd2", label="Stable Diffusion 2.x (768, v-prediction)", group="sd2", latent_channels=4,
            buckets=generated_buckets(768 * 768, 64), native_area=768 * 768,
            steps={"quality": 40, "balanced": 25, "speed": 15}, steps_range=(12, 50),
            cfg=7.0, cfg_range=(5.5, 8.5), sampler="dpmpp_2m", scheduler="karras",
            params_b=0.865, text_encoder_b=0.354, vae_b=0.084, memory_usage_factor=1.0,
            pixels_per_token=475,
            sources={
                "resolution": "HF stabilityai/stable-diffusion-2-1 (768x768 v-model)",
                "steps": "convention", "steps_quality": _UNET_QUALITY,
                "cfg": "diffusers StableDiffusionPipeline guidance_scale default 7.5 (7 convention)",
                "sampler": "convention",
                "size": "HF stabilityai/stable-diffusion-2-1 (865M UNet, OpenCLIP ViT-H text encoder 354M)",
                "memory": "CU comfy/supported_models.py:95 memory_usage_factor 1.0",
                "flops": "torch.utils.flop_counter on CU UNetModel (SD21 config of comfy/model_detection.py): 2.15 TFLOP per 768x768 evaluation -> 475 pixels per token",
            }),
        FamilyProfile(
            id="sdxl", label="Stable Diffusion XL 1.0", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 40, "balanced": 30, "speed": 20}, steps_range=(20, 60),
            cfg=7.0, cfg_range=(4.5, 8.0), sampler="dpmpp_2m_sde_gpu", scheduler="karras",
            stylized_sampler="euler_ancestral", stylized_scheduler="normal",
            sources={
                "resolution": _SDXL_CARD + "; buckets FO modules/flags.py sdxl_aspect_ratios",
                "steps": _FO_STEPS + " (balanced: SPEED 30)",
                "steps_quality": _UNET_QUALITY + "; FO's QUALITY 60 doubles the time",
                "steps_speed": "convention (20, where DPM++ 2M settles: DPM-Solver++, arXiv:2211.01095, "
                               "'high-quality samples within only 15 to 20 steps for guided sampling')",
                "cfg": _FO_SAI, "sampler": _FO_SAI,
                "stylized_sampler": "community practice: Euler a with the normal scheduler, as anime SDXL "
                                    "fine-tunes publish (HF Laxhar/noobai-XL-1.0; civitai.com/models/257749)",
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            }),
        FamilyProfile(
            id="sdxl_turbo", label="SDXL Turbo", group="sdxl", latent_channels=4,
            buckets=generated_buckets(512 * 512, 64), native_area=512 * 512,
            steps={"quality": 4, "balanced": 1, "speed": 1}, steps_range=(1, 4),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="euler_ancestral", scheduler="sgm_uniform",
            distilled=True, params_b=2.57, text_encoder_b=0.82, vae_b=0.084,
            memory_usage_factor=0.8, pixels_per_token=768,
            sources={
                "resolution": "HF stabilityai/sdxl-turbo (512x512)",
                "steps": "HF stabilityai/sdxl-turbo (num_inference_steps=1; up to 4 for img quality)",
                "cfg": "HF stabilityai/sdxl-turbo (guidance_scale=0.0 -> CFG 1)",
                "sampler": "CE sdturbo (euler_ancestral); sgm_uniform convention for KSampler",
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            }),
        FamilyProfile(
            id="sdxl_lightning", label="SDXL Lightning", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 8, "balanced": 4, "speed": 4}, steps_range=(2, 8),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="euler", scheduler="sgm_uniform", distilled=True,
            sources={
                "resolution": _SDXL_CARD,
                "steps": "HF ByteDance/SDXL-Lightning (1/2/4/8-step checkpoints: use the file's step count); " + _FO_STEPS,
                "cfg": "HF ByteDance/SDXL-Lightning (guidance_scale=0 -> CFG 1)",
                "sampler": "HF ByteDance/SDXL-Lightning (ComfyUI: Euler sampler, sgm_uniform scheduler); FO modules/async_worker.py",
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            },
            notes=("Lightning checkpoints are trained for one step count: the optimizer reads it from the file name when it can.",)),
        FamilyProfile(
            id="sdxl_hyper", label="Hyper-SDXL", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 8, "balanced": 4, "speed": 4}, steps_range=(1, 12),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="dpmpp_sde_gpu", scheduler="karras", distilled=True,
            sources={
                "resolution": _SDXL_CARD,
                "steps": "HF ByteDance/Hyper-SD (1/2/4/8/12-step variants); " + _FO_STEPS,
                "cfg": "HF ByteDance/Hyper-SD (guidance_scale=0 -> CFG 1)",
                "sampler": "FO modules/async_worker.py Hyper-SD performance (dpmpp_sde_gpu, karras)",
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            }),
        FamilyProfile(
            id="sdxl_lcm", label="SDXL LCM", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 8, "balanced": 6, "speed": 4}, steps_range=(4, 8),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="lcm", scheduler="sgm_uniform", distilled=True,
            sources={
                "resolution": _SDXL_CARD,
                "steps": "HF latent-consistency/lcm-lora-sdxl (4-8 steps); " + _FO_STEPS,
                "cfg": "HF latent-consistency/lcm-lora-sdxl (guidance_scale 1.0)",
                "sampler": "CE lcm (lcm sampler with sgm_uniform scheduler); FO modules/async_worker.py uses lcm",
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            }),
        FamilyProfile(
            id="sdxl_fast_merge", label="SDXL Lightning/Turbo/Hyper community merge", group="sdxl",
            **_SDXL_SIZES,
            steps={"quality": 8, "balanced": 6, "speed": 4}, steps_range=(3, 8),
            cfg=2.0, cfg_range=(1.5, 2.0), sampler="dpmpp_sde", scheduler="karras", distilled=True,
            sources={
                "resolution": _SDXL_CARD,
                "steps": _LIGHTNING_MERGES + " (balanced 6: inside every range above)",
                "steps_quality": "civitai.com/models/112902 DreamShaper XL Turbo (4-8 steps)",
                "steps_speed": "civitai.com/models/112902 DreamShaper XL Lightning (3-6 steps); HF SG161222/RealVisXL_V4.0_Lightning (4+)",
                "cfg": _LIGHTNING_MERGES, "sampler": _LIGHTNING_MERGES,
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            },
            notes=("Community Lightning/Turbo/Hyper merges (Juggernaut, RealVis, DreamShaper ...) publish "
                   "DPM++ SDE Karras at CFG 1.5-2, unlike ByteDance's base files (Euler, CFG 1): check the "
                   "model page of yours.",)),
        FamilyProfile(
            id="pony", label="Pony Diffusion V6 XL", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 35, "balanced": 25, "speed": 20}, steps_range=(20, 40),
            cfg=7.0, cfg_range=(6.0, 8.0), sampler="euler_ancestral", scheduler="normal",
            clip_skip=-2,
            sources={
                "resolution": "civitai.com/models/257749 (SDXL sizes, 1024 class)",
                "steps": "civitai.com/models/257749 (Euler a, 25 steps)",
                "steps_quality": "community practice: 35, the top of HF Laxhar/noobai-XL-1.0's 28-35 steps with Euler a on the same architecture",
                "cfg": "convention (CFG 7 with Pony V6)",
                "sampler": "civitai.com/models/257749 (Euler a)",
                "clip_skip": "civitai.com/models/257749 (clip skip 2); " + _CU_SDXL_CLIP,
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            },
            notes=("Pony V6 expects quality tags such as 'score_9, score_8_up, score_7_up' at the start of the prompt.",)),
        FamilyProfile(
            id="illustrious", label="Illustrious-XL / NoobAI-XL", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 35, "balanced": 28, "speed": 20}, steps_range=(20, 40),
            cfg=5.5, cfg_range=(4.5, 7.0), sampler="euler_ancestral", scheduler="normal",
            clip_skip=-2,
            sources={
                "resolution": "HF Laxhar/noobai-XL-1.0 (about 1024x1024 total area, e.g. 832x1216)",
                "steps": "HF Laxhar/noobai-XL-1.0 (28-35 steps); HF OnomaAIResearch/Illustrious-xl-early-release-v0 (20-28)",
                "steps_speed": "convention (20, the bottom of HF OnomaAIResearch/Illustrious-xl-early-release-v0's 20-28)",
                "cfg": "HF Laxhar/noobai-XL-1.0 (CFG 4-5); HF OnomaAIResearch/Illustrious-xl-early-release-v0 (5-7.5)",
                "sampler": "HF Laxhar/noobai-XL-1.0 (Euler a)",
                "clip_skip": "convention (clip skip 2 for anime SDXL); " + _CU_SDXL_CLIP,
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            },
            notes=("NoobAI v-prediction checkpoints need Euler (not ancestral) and ModelSamplingDiscrete v_prediction.",)),
        FamilyProfile(
            id="playground25", label="Playground v2.5", group="sdxl", **_SDXL_SIZES,
            steps={"quality": 40, "balanced": 30, "speed": 20}, steps_range=(20, 50),
            cfg=3.0, cfg_range=(2.0, 3.5), sampler="dpmpp_2m", scheduler="karras",
            sources={
                "resolution": "HF playgroundai/playground-v2.5-1024px-aesthetic (1024px, multiple aspect ratios)",
                "steps": "convention (30; the card's example runs 50)",
                "steps_quality": _UNET_QUALITY + "; the card's example runs 50 (HF playgroundai/playground-v2.5-1024px-aesthetic)",
                "cfg": "HF playgroundai/playground-v2.5-1024px-aesthetic (guidance_scale=3); FO presets/playground_v2.5.json (2.0)",
                "sampler": "FO presets/playground_v2.5.json (dpmpp_2m; Karras-type EDM sigmas -> karras)",
                "size": _SDXL_CARD, "memory": _CU_SDXL_MEM,
            }),
        FamilyProfile(
            id="sd3", label="Stable Diffusion 3 Medium", group="sd3", latent_channels=16,
            buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 28, "speed": 20}, steps_range=(20, 50),
            cfg=7.0, cfg_range=(4.5, 7.0), sampler="euler", scheduler="sgm_uniform",
            params_b=2.0, text_encoder_b=5.6, vae_b=0.084, memory_usage_factor=1.6,
            sources={
                "resolution": "HF stabilityai/stable-diffusion-3-medium (1024x1024)",
                "steps": "HF stabilityai/stable-diffusion-3-medium (num_inference_steps=28)",
                "steps_quality": _FLOW_QUALITY, "steps_speed": "convention",
                "cfg": "HF stabilityai/stable-diffusion-3-medium (guidance_scale=7.0)",
                "sampler": "convention (euler, sgm_uniform; flow matching with shift 3, CU comfy/supported_models.py:538)",
                "size": "HF stabilityai/stable-diffusion-3-medium (2B MMDiT; CLIP-L, CLIP-G, T5-XXL)",
                "memory": "CU comfy/supported_models.py:545 memory_usage_factor 1.6",
            }),
        FamilyProfile(
            id="sd35_large", label="Stable Diffusion 3.5 Large", group="sd3", latent_channels=16,
            buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 28, "speed": 20}, steps_range=(20, 50),
            cfg=3.5, cfg_range=(3.0, 4.5), sampler="euler", scheduler="sgm_uniform",
            params_b=8.1, text_encoder_b=5.6, vae_b=0.084, memory_usage_factor=1.6, fp8_release=True,
            sources={
                "resolution": "HF stabilityai/stable-diffusion-3.5-large (1 MP)",
                "steps": "HF stabilityai/stable-diffusion-3.5-large (num_inference_steps=28)",
                "steps_quality": _FLOW_QUALITY,
                "steps_speed": "CE sd3/sd3.5_simple_example.png (20 steps, cfg 4, euler, sgm_uniform)",
                "cfg": "HF stabilityai/stable-diffusion-3.5-large (guidance_scale=3.5)",
                "sampler": "convention (euler, sgm_uniform)",
                "size": "HF stabilityai/stable-diffusion-3.5-large (8.1B MMDiT)",
                "memory": "CU comfy/supported_models.py:545 memory_usage_factor 1.6",
            }),
        FamilyProfile(
            id="sd35_large_turbo", label="Stable Diffusion 3.5 Large Turbo", group="sd3",
            latent_channels=16, buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 8, "balanced": 4, "speed": 4}, steps_range=(4, 8),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="euler", scheduler="sgm_uniform", distilled=True,
            params_b=8.1, text_encoder_b=5.6, vae_b=0.084, memory_usage_factor=1.6, fp8_release=True,
            sources={
                "resolution": "HF stabilityai/stable-diffusion-3.5-large-turbo (1 MP)",
                "steps": "HF stabilityai/stable-diffusion-3.5-large-turbo (num_inference_steps=4)",
                "cfg": "HF stabilityai/stable-diffusion-3.5-large-turbo (guidance_scale=0.0 -> CFG 1)",
                "sampler": "convention (euler, sgm_uniform)",
                "size": "HF stabilityai/stable-diffusion-3.5-large-turbo (8.1B MMDiT)",
                "memory": "CU comfy/supported_models.py:545 memory_usage_factor 1.6",
            }),
        FamilyProfile(
            id="sd35_medium", label="Stable Diffusion 3.5 Medium", group="sd3", latent_channels=16,
            buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 40, "balanced": 40, "speed": 25}, steps_range=(25, 50),
            cfg=4.5, cfg_range=(3.5, 5.0), sampler="euler", scheduler="sgm_uniform",
            params_b=2.5, text_encoder_b=5.6, vae_b=0.084, memory_usage_factor=1.6,
            sources={
                "resolution": "HF stabilityai/stable-diffusion-3.5-medium (0.25 to 2 MP)",
                "steps": "HF stabilityai/stable-diffusion-3.5-medium (num_inference_steps=40)",
                "steps_speed": "convention",
                "cfg": "HF stabilityai/stable-diffusion-3.5-medium (guidance_scale=4.5)",
                "sampler": "convention (euler, sgm_uniform)",
                "size": "HF stabilityai/stable-diffusion-3.5-medium (2.5B MMDiT-X)",
                "memory": "CU comfy/supported_models.py:545 memory_usage_factor 1.6",
            }),
        FamilyProfile(
            id="flux_dev", label="FLUX.1 [dev]", group="flux", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 28, "speed": 20}, steps_range=(20, 50),
            cfg=1.0, cfg_range=(1.0, 1.0), guidance=3.5, sampler="euler", scheduler="simple",
            params_b=12.0, text_encoder_b=4.9, vae_b=0.084, memory_usage_factor=3.1, fp8_release=True,
            sources={
                "resolution": "HF black-forest-labs/FLUX.1-dev (1024x1024 example; multiples of 16)",
                "steps": "diffusers FluxPipeline num_inference_steps default 28 (src/diffusers/pipelines/flux/pipeline_flux.py)",
                "steps_quality": _FLOW_QUALITY + "; HF black-forest-labs/FLUX.1-dev's example runs 50",
                "steps_speed": "CE flux/flux_dev_example.png (20 steps, euler, simple, FluxGuidance 3.5)",
                "cfg": "CU comfy_extras/nodes_flux.py FluxGuidance: guidance-distilled, KSampler CFG 1",
                "guidance": "HF black-forest-labs/FLUX.1-dev (guidance_scale=3.5); CE flux (FluxGuidance 3.5)",
                "sampler": "CE flux (euler, simple)",
                "size": "HF black-forest-labs/FLUX.1-dev (12B rectified flow transformer; CLIP-L + T5-XXL)",
                "memory": "CU comfy/supported_models.py:707 memory_usage_factor 3.1",
            }),
        FamilyProfile(
            id="flux_schnell", label="FLUX.1 [schnell]", group="flux", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 4, "balanced": 4, "speed": 2}, steps_range=(1, 4),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="euler", scheduler="simple", distilled=True,
            params_b=12.0, text_encoder_b=4.9, vae_b=0.084, memory_usage_factor=3.1, fp8_release=True,
            sources={
                "resolution": "HF black-forest-labs/FLUX.1-schnell (1024x1024 example)",
                "steps": "HF black-forest-labs/FLUX.1-schnell (num_inference_steps=4; 1-4 steps)",
                "cfg": "HF black-forest-labs/FLUX.1-schnell (guidance_scale=0.0 -> CFG 1)",
                "sampler": "CE flux (euler, simple)",
                "size": "HF black-forest-labs/FLUX.1-schnell (12B)",
                "memory": "CU comfy/supported_models.py:707 memory_usage_factor 3.1",
            }),
        FamilyProfile(
            id="flux2", label="FLUX.2 [dev]", group="flux2", latent_channels=128, latent_scale=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 28, "speed": 20}, steps_range=(20, 50),
            cfg=1.0, cfg_range=(1.0, 1.0), guidance=4.0, sampler="euler", scheduler="simple",
            params_b=32.0, text_encoder_b=24.0, vae_b=0.084, memory_usage_factor=3.1 * 4 * 2.36,
            fp8_release=True,
            sources={
                "resolution": "HF black-forest-labs/FLUX.2-dev (up to 4 MP; 1 MP default)",
                "steps": "convention (28, as FLUX.1 dev in diffusers)",
                "steps_quality": _FLOW_QUALITY + "; HF black-forest-labs/FLUX.2-dev's example runs 50",
                "steps_speed": "CE flux2/flux2_example.png (Flux2Scheduler 20 steps, euler, FluxGuidance 4)",
                "cfg": "guidance-distilled like FLUX.1 dev: KSampler CFG 1 (CU comfy/supported_models.py:747 Flux2 subclasses Flux)",
                "guidance": "HF black-forest-labs/FLUX.2-dev (guidance_scale=4)",
                "sampler": _FLOW_SAMPLER,
                "size": "HF black-forest-labs/FLUX.2-dev (32B transformer; Mistral Small 3.1 24B text encoder)",
                "memory": "CU comfy/supported_models.py:766 (memory_usage_factor 3.1 x 4 x 2.36)",
            }),
        FamilyProfile(
            id="flux2_klein", label="FLUX.2 [klein] (distilled)", group="flux2", latent_channels=128,
            latent_scale=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 8, "balanced": 4, "speed": 4}, steps_range=(4, 8),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="euler", scheduler="beta", distilled=True,
            params_b=4.0, text_encoder_b=4.0, vae_b=0.084, memory_usage_factor=3.1 * 4 * 2.36,
            sources={
                "resolution": "CT Flux.2 Klein 4B/9B distilled (1024x1024)",
                "steps": "CT Flux.2 Klein 4B/9B distilled (4 steps); InvokeAI docs FLUX.2 Klein (4 steps, CFG 1)",
                "cfg": "CT Flux.2 Klein distilled (CFG 1)",
                "sampler": "CT Flux.2 Klein distilled (euler, beta)",
                "size": "4B or 9B transformer (hidden 3072 / 4096, PortOS PR #963); Qwen3 text encoder",
                "memory": "CU comfy/supported_models.py:766",
            }),
        FamilyProfile(
            id="flux2_klein_base", label="FLUX.2 [klein] base (undistilled)", group="flux2",
            latent_channels=128, latent_scale=16, buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 20, "speed": 14}, steps_range=(14, 30),
            cfg=5.0, cfg_range=(4.0, 5.5), sampler="euler", scheduler="beta",
            params_b=4.0, text_encoder_b=4.0, vae_b=0.084, memory_usage_factor=3.1 * 4 * 2.36,
            sources={
                "resolution": "CT Flux.2 Klein 4B/9B (1024x1024)",
                "steps": "CT Flux.2 Klein 4B/9B base (20 steps); quality/speed convention",
                "cfg": "CT Flux.2 Klein 4B/9B base (CFG 5)",
                "sampler": "CT Flux.2 Klein base (euler, beta)",
                "size": "4B or 9B transformer (hidden 3072 / 4096, PortOS PR #963); Qwen3 text encoder",
                "memory": "CU comfy/supported_models.py:766",
            }),
        FamilyProfile(
            id="chroma", label="Chroma", group="flux", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 26, "speed": 20}, steps_range=(20, 45),
            cfg=3.5, cfg_range=(3.0, 4.5), sampler="euler", scheduler="beta",
            params_b=8.9, text_encoder_b=4.7, vae_b=0.084, memory_usage_factor=3.2,
            sources={
                "resolution": "CT Chroma (1024x1024)",
                "steps": "CT Chroma (26 steps)", "steps_speed": "convention",
                "steps_quality": "CE chroma/chroma_example.png (30 steps, cfg 4, euler, simple); " + _FLOW_QUALITY,
                "cfg": "CT Chroma (CFG 3.5); diffusers ChromaPipeline guidance_scale default 3.5 (diffusers PR #12360)",
                "sampler": "CT Chroma (euler, beta)",
                "size": "HF lodestones/Chroma1-HD (8.9B, FLUX.1 schnell based; T5-XXL only)",
                "memory": "CU comfy/supported_models.py:1292 memory_usage_factor 3.2",
            }),
        FamilyProfile(
            id="lumina2", label="Lumina Image 2.0", group="lumina2", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 50, "balanced": 30, "speed": 20}, steps_range=(20, 50),
            cfg=4.0, cfg_range=(3.5, 5.0), sampler="res_multistep", scheduler="simple",
            params_b=2.0, text_encoder_b=2.6, vae_b=0.084, memory_usage_factor=1.4,
            sources={
                "resolution": "HF Alpha-VLLM/Lumina-Image-2.0 (1024x1024)",
                "steps": "HF Alpha-VLLM/Lumina-Image-2.0 discussion #12 (the base model 'requires up to 50 iterations'); official HF Space default 30",
                "cfg": "official HF Space Alpha-VLLM/Lumina-Image-2.0 (guidance_scale 4.0)",
                "sampler": "convention (res_multistep, simple, as ComfyUI's Lumina 2 / Z-Image templates use)",
                "size": "diffusers docs Lumina2 (2B flow transformer); Gemma-2-2B text encoder",
                "memory": "CU comfy/supported_models.py:1015 memory_usage_factor 1.4",
            }),
        FamilyProfile(
            id="z_image_turbo", label="Z-Image Turbo", group="z_image", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 9, "balanced": 8, "speed": 8}, steps_range=(8, 9),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="res_multistep", scheduler="simple", distilled=True,
            params_b=6.15, text_encoder_b=4.0, vae_b=0.084, memory_usage_factor=2.0,
            sources={
                "resolution": "HF Tongyi-MAI/Z-Image-Turbo (1024x1024 example)",
                "steps": "CT Z-Image Turbo (8 steps); HF Tongyi-MAI/Z-Image-Turbo (num_inference_steps=9, i.e. 8 model evaluations)",
                "cfg": "HF Tongyi-MAI/Z-Image-Turbo (guidance_scale=0.0 -> CFG 1); CT Z-Image Turbo (CFG 1)",
                "sampler": "CT Z-Image Turbo (res_multistep, simple)",
                "size": "HF Tongyi-MAI/Z-Image-Turbo (6.15B; Qwen3-4B text encoder)",
                "memory": "CU comfy/supported_models.py:1045 memory_usage_factor 2.0",
            }),
        FamilyProfile(
            id="z_image", label="Z-Image (base)", group="z_image", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 25, "speed": 18}, steps_range=(18, 40),
            cfg=4.0, cfg_range=(3.5, 5.0), sampler="res_multistep", scheduler="simple",
            params_b=6.15, text_encoder_b=4.0, vae_b=0.084, memory_usage_factor=2.0,
            sources={
                "resolution": "CT Z-Image (1024x1024)",
                "steps": "CT Z-Image (25 steps)", "steps_quality": _FLOW_QUALITY, "steps_speed": "convention",
                "cfg": "CT Z-Image (CFG 4)",
                "sampler": "CT Z-Image (res_multistep, simple)",
                "size": "HF Tongyi-MAI/Z-Image-Turbo card (6.15B family; Qwen3-4B text encoder)",
                "memory": "CU comfy/supported_models.py:1045 memory_usage_factor 2.0",
            }),
        FamilyProfile(
            id="qwen_image", label="Qwen-Image", group="qwen_image", latent_channels=16,
            buckets=_QWEN_BUCKETS, native_area=1328 * 1328,
            steps={"quality": 30, "balanced": 20, "speed": 16}, steps_range=(16, 50),
            cfg=4.0, cfg_range=(2.5, 4.5), sampler="euler", scheduler="simple",
            params_b=20.0, text_encoder_b=7.0, vae_b=0.127, memory_usage_factor=1.8, fp8_release=True,
            sources={
                "resolution": "HF Qwen/Qwen-Image (aspect_ratios table, 1328x1328 for 1:1)",
                "steps": "CE qwen_image/qwen_image_basic_example.png (20 steps, cfg 2.5, euler, simple, shift 3.1)",
                "steps_quality": _FLOW_QUALITY + "; HF Qwen/Qwen-Image's example runs 50 with true CFG 4, "
                                 "two model passes a step",
                "steps_speed": "convention",
                "cfg": "HF Qwen/Qwen-Image (true_cfg_scale=4.0)",
                "sampler": _FLOW_SAMPLER,
                "size": "HF Qwen/Qwen-Image (20B MMDiT; Qwen2.5-VL 7B text encoder)",
                "memory": "CU comfy/supported_models.py:1391 memory_usage_factor 1.8",
            }),
        FamilyProfile(
            id="hidream", label="HiDream-I1 Full", group="hidream", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 50, "balanced": 40, "speed": 28}, steps_range=(28, 50),
            cfg=5.0, cfg_range=(4.0, 5.0), sampler="uni_pc", scheduler="simple",
            params_b=17.0, text_encoder_b=14.0, vae_b=0.084, memory_usage_factor=2.0, fp8_release=True,
            sources={
                "resolution": "HF HiDream-ai/HiDream-I1-Full (1024x1024)",
                "steps": "HF HiDream-ai/HiDream-I1-Full (50 steps); CT HiDream I1 full (50)",
                "cfg": "HF HiDream-ai/HiDream-I1-Full (guidance_scale 5.0)",
                "sampler": "CT HiDream I1 full (50 steps, CFG 5, uni_pc, simple)",
                "size": "HF HiDream-ai/HiDream-I1-Full (17B; CLIP-L, CLIP-G, T5-XXL, Llama-3.1-8B)",
                "memory": "CU comfy/supported_models.py:1261 (no factor set: BASE default 2.0, supported_models_base.py:49)",
            }),
        FamilyProfile(
            id="hidream_dev", label="HiDream-I1 Dev", group="hidream", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 28, "balanced": 28, "speed": 20}, steps_range=(20, 28),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="lcm", scheduler="normal", distilled=True,
            params_b=17.0, text_encoder_b=14.0, vae_b=0.084, memory_usage_factor=2.0, fp8_release=True,
            sources={
                "resolution": "HF HiDream-ai/HiDream-I1-Dev (1024x1024)",
                "steps": "HF HiDream-ai/HiDream-I1-Dev (28 steps)",
                "cfg": "HF HiDream-ai/HiDream-I1-Dev (guidance_scale 0.0 -> CFG 1)",
                "sampler": "CT HiDream I1 dev (28 steps, CFG 1, lcm, normal)",
                "size": "HF HiDream-ai/HiDream-I1-Dev (17B)",
                "memory": "CU supported_models_base.py:49 default 2.0",
            }),
        FamilyProfile(
            id="hidream_fast", label="HiDream-I1 Fast", group="hidream", latent_channels=16,
            buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 16, "balanced": 16, "speed": 16}, steps_range=(16, 16),
            cfg=1.0, cfg_range=(1.0, 1.0), sampler="lcm", scheduler="normal", distilled=True,
            params_b=17.0, text_encoder_b=14.0, vae_b=0.084, memory_usage_factor=2.0, fp8_release=True,
            sources={
                "resolution": "HF HiDream-ai/HiDream-I1-Fast (1024x1024)",
                "steps": "HF HiDream-ai/HiDream-I1-Fast (16 steps)",
                "cfg": "HF HiDream-ai/HiDream-I1-Fast (guidance_scale 0.0 -> CFG 1)",
                "sampler": "CT HiDream I1 fast (16 steps, CFG 1, lcm, normal)",
                "size": "HF HiDream-ai/HiDream-I1-Fast (17B)",
                "memory": "CU supported_models_base.py:49 default 2.0",
            }),
        FamilyProfile(
            id="auraflow", label="AuraFlow", group="auraflow", latent_channels=4,
            buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 20, "speed": 16}, steps_range=(16, 50),
            cfg=3.5, cfg_range=(3.0, 4.5), sampler="euler", scheduler="simple",
            params_b=6.8, text_encoder_b=1.5, vae_b=0.084, memory_usage_factor=2.0,
            sources={
                "resolution": "HF fal/AuraFlow-v0.3 (1024x1024)",
                "steps": "CE aura_flow/aura_flow_0.2_example.png (20 steps, cfg 3.5, euler, sgm_uniform)",
                "steps_quality": _FLOW_QUALITY + "; HF fal/AuraFlow-v0.3's example runs 50",
                "steps_speed": "convention",
                "cfg": "HF fal/AuraFlow-v0.3 (guidance_scale=3.5)",
                "sampler": _FLOW_SAMPLER + "; shift 1.73 CU comfy/supported_models.py:604",
                "size": "HF fal/AuraFlow (6.8B; Pile-T5-XL encoder, ~1.5B assumed)",
                "memory": "CU supported_models_base.py:49 default 2.0",
            }),
        FamilyProfile(
            id="hunyuan_dit", label="Hunyuan-DiT", group="hunyuan_dit", latent_channels=4,
            buckets=_HUNYUAN_DIT_BUCKETS, native_area=1024 * 1024,
            steps={"quality": 40, "balanced": 40, "speed": 25}, steps_range=(25, 50),
            cfg=5.0, cfg_range=(4.0, 6.0), sampler="euler", scheduler="normal",
            params_b=1.5, text_encoder_b=2.0, vae_b=0.084, memory_usage_factor=1.3,
            sources={
                "resolution": "HF Tencent-Hunyuan/HunyuanDiT (supported shapes table)",
                "steps": "convention (40; diffusers HunyuanDiTPipeline num_inference_steps default 50)",
                "steps_quality": _UNET_QUALITY + "; diffusers HunyuanDiTPipeline num_inference_steps default 50",
                "cfg": "diffusers HunyuanDiTPipeline guidance_scale default 5.0",
                "sampler": "convention (euler, normal)",
                "size": "HF Tencent-Hunyuan/HunyuanDiT (1.5B DiT; bilingual CLIP + mT5-XL encoder, ~2B assumed)",
                "memory": "CU comfy/supported_models.py:671 memory_usage_factor 1.3",
            }),
        FamilyProfile(
            id="pixart_sigma", label="PixArt-Sigma", group="pixart", latent_channels=4,
            buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 20, "speed": 14}, steps_range=(14, 30),
            cfg=4.5, cfg_range=(3.5, 5.0), sampler="dpmpp_2m", scheduler="simple",
            params_b=0.6, text_encoder_b=4.7, vae_b=0.084, memory_usage_factor=0.5,
            sources={
                "resolution": "HF PixArt-alpha/PixArt-Sigma-XL-2-1024-MS (1024 multi-scale)",
                "steps": "diffusers PixArtSigmaPipeline num_inference_steps default 20",
                "cfg": "diffusers PixArtSigmaPipeline guidance_scale default 4.5",
                "sampler": "convention (DPM-Solver as in the PixArt repo -> dpmpp_2m)",
                "size": "HF PixArt-alpha/PixArt-Sigma-XL-2-1024-MS (0.6B; T5-XXL)",
                "memory": "CU comfy/supported_models.py:637 memory_usage_factor 0.5",
            }),
        FamilyProfile(
            id="stable_cascade", label="Stable Cascade (stage C)", group="stable_cascade",
            latent_channels=16, buckets=_MP1_64, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 20, "speed": 15}, steps_range=(15, 30),
            cfg=4.0, cfg_range=(3.0, 5.0), sampler="euler_ancestral", scheduler="simple",
            params_b=3.6, text_encoder_b=0.7, vae_b=1.6, memory_usage_factor=2.0,
            pixels_per_token=1764, latent_scale=42,
            sources={
                "resolution": "HF stabilityai/stable-cascade (1024x1024)",
                "steps": "HF stabilityai/stable-cascade (prior num_inference_steps=20)",
                "cfg": "HF stabilityai/stable-cascade (prior guidance_scale=4.0)",
                "sampler": "CE stable_cascade (stage C: euler_ancestral, simple)",
                "size": "HF stabilityai/stable-cascade (stage C 3.6B, stage B 1.5B)",
                "memory": "CU supported_models_base.py:49 default 2.0",
            },
            notes=("Stable Cascade runs two samplers: these values are for stage C; stage B uses 10 steps at CFG 1.1.",)),
        FamilyProfile(
            id="generic_flow", label="Unknown flow-matching model (generic profile)", group="unknown",
            latent_channels=16, buckets=_MP1_16, native_area=1024 * 1024,
            steps={"quality": 30, "balanced": 30, "speed": 20}, steps_range=(20, 40),
            cfg=4.0, cfg_range=(3.5, 4.5), sampler="euler", scheduler="simple",
            params_b=8.0, text_encoder_b=5.0, vae_b=0.084, memory_usage_factor=2.0,
            sources={
                "resolution": "convention (1 MP, multiples of 16, as most flow transformers)",
                "steps": "convention", "steps_quality": _FLOW_QUALITY, "cfg": "convention",
                "sampler": _FLOW_SAMPLER,
                "size": "assumption (8B transformer, 5B text encoders)",
                "memory": "CU supported_models_base.py:49 default 2.0",
            },
            notes=("Generic profile for a model KubikAI has no published settings for: check the model card.",)),
    )


FAMILIES: dict[str, FamilyProfile] = {p.id: p for p in _profiles()}
FAMILY_IDS: tuple[str, ...] = tuple(FAMILIES)
# The profile used when the family cannot be told at all (documented fallback, confidence 0).
FALLBACK_FAMILY = "sdxl"


def get_family(name: str) -> FamilyProfile:
    """The profile for a family id; a clear error listing the valid ids otherwise."""
    profile = FAMILIES.get(name)
    if profile is None:
        key = str(name).strip().lower().replace("-", "_").replace(".", "")
        profile = FAMILIES.get(key)
    if profile is None:
        raise ParamsError(f"family: unknown family {name!r}; valid ids: {', '.join(FAMILY_IDS)}")
    return profile
