"""Which family a loaded model belongs to.

Order of evidence, best first:

1. ComfyUI's model config class (``type(model.model.model_config).__name__``, the most derived
   class, so FLUX.2's ``Flux2`` is seen before its base ``Flux``), then the model class and its
   bases (``Flux2`` is a subclass of ``Flux`` and ``Chroma`` too: comfy/model_base.py:922,1457),
   then ``context_dim`` for plain UNets (768 SD1, 1024 SD2, 2048 SDXL).
2. unet_config entries for variants of one class: SD3 ``depth`` 38 = 3.5 Large, MMDiT-X self
   attention layers = 3.5 Medium (comfy/model_detection.py:49,74); FLUX.2 ``hidden_size`` below
   6144 = klein; ``guidance_embed`` False = FLUX.1 schnell (comfy/supported_models.py:735).
3. For models ComfyUI loads as plain SDXL (Pony, Illustrious/NoobAI, Turbo, Lightning, Hyper,
   LCM, Playground): the checkpoint's file name and its safetensors metadata (modelspec.title,
   modelspec.architecture, ss_base_model_version, ss_sd_model_name), and ComfyUI's EDM model
   type, which it sets for Playground v2.5 (comfy/supported_models.py:201).

Anything unrecognised gets the documented fallback: the generic flow profile for flow-matching
models, else the SDXL profile, with confidence 0 and a reason saying so. Never an exception,
except for a family name the user typed that does not exist.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .families import FALLBACK_FAMILY, get_family
from .plan import ModelInfo


@dataclass(frozen=True)
class FamilyDetection:
    family: str
    confidence: float      # 1.0 chosen by the user, ~0.9 from ComfyUI's classes, 0 = fallback
    reason: str
    steps_hint: int | None = None  # step count a distilled checkpoint's name announces ("4step")


# ComfyUI config class (comfy/supported_models.py) -> family id.
_CONFIG_CLASSES = {
    "SD15": "sd15", "SD15_instructpix2pix": "sd15",
    "SD20": "sd2", "SD21UnclipL": "sd2", "SD21UnclipH": "sd2",
    "SDXL": "sdxl", "SSD1B": "sdxl", "Segmind_Vega": "sdxl", "KOALA_700M": "sdxl",
    "KOALA_1B": "sdxl", "SDXL_instructpix2pix": "sdxl", "SDXLRefiner": "sdxl",
    "SD3": "sd3",
    "Flux": "flux_dev", "FluxInpaint": "flux_dev", "FluxSchnell": "flux_schnell",
    "Flux2": "flux2", "Chroma": "chroma", "ChromaRadiance": "chroma",
    "Lumina2": "lumina2", "ZImage": "z_image_turbo", "QwenImage": "qwen_image",
    "HiDream": "hidream", "AuraFlow": "auraflow", "HunyuanDiT": "hunyuan_dit",
    "HunyuanDiT1": "hunyuan_dit", "PixArtSigma": "pixart_sigma", "PixArtAlpha": "pixart_sigma",
    "Stable_Cascade_C": "stable_cascade",
}
# ComfyUI model classes (comfy/model_base.py), checked most derived first along the MRO.
_MODEL_CLASSES = {
    "Flux2": "flux2", "Chroma": "chroma", "Flux": "flux_dev", "SDXL": "sdxl", "SDXLRefiner": "sdxl",
    "SD3": "sd3", "Lumina2": "lumina2", "QwenImage": "qwen_image", "HiDream": "hidream",
    "AuraFlow": "auraflow", "HunyuanDiT": "hunyuan_dit", "PixArt": "pixart_sigma",
    "StableCascade_C": "stable_cascade",
}
# Classes ComfyUI knows that are video, audio, 3D, edit or refiner models: no txt2img profile.
_NO_PROFILE = {
    "WAN21", "WAN22", "LTXV", "LTXAV", "HunyuanVideo", "HunyuanVideo15", "CosmosVideo",
    "CosmosPredict2", "GenmoMochi", "Omnigen2", "Kandinsky5", "Kandinsky5Image",
    "HunyuanImage21", "HunyuanImage21Refiner", "StableAudio1", "ACEStep", "Hunyuan3Dv2",
    "Hunyuan3Dv2_1", "SVD_img2vid", "SV3D_u", "SV3D_p", "Stable_Zero123", "StableCascade_B",
    "SD_X4Upscaler", "Lotus",
}
_CONTEXT_DIMS = {768: "sd15", 1024: "sd2", 2048: "sdxl"}

# SDXL look-alikes: (pattern on name + metadata, family), first match wins. Distillations first:
# a "pony lightning" merge samples like Lightning.
_SDXL_VARIANTS = (
    (re.compile(r"lightning"), "sdxl_lightning"),
    (re.compile(r"hyper[-_ ]?sd|hyper"), "sdxl_hyper"),
    (re.compile(r"\blcm\b|[-_]lcm|lcm[-_]"), "sdxl_lcm"),
    (re.compile(r"turbo"), "sdxl_turbo"),
    (re.compile(r"pony|pdxl|score_9"), "pony"),
    (re.compile(r"illustrious|noob|\bilxl\b|[-_]ilxl|illu[-_]"), "illustrious"),
    (re.compile(r"playground"), "playground25"),
)
# modelspec.architecture prefixes (kohya-ss sd-scripts library/sai_model_spec.py) -> family.
_ARCHITECTURES = (
    ("stable-diffusion-xl-v1", "sdxl"), ("stable-diffusion-v1", "sd15"), ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-3.5-large", "sd35_large"), ("stable-diffusion-3.5-medium", "sd35_medium"),
    ("stable-diffusion-3", "sd3"), ("flux-1-dev", "flux_dev"), ("flux-1-schnell", "flux_schnell"),
    ("flux-2", "flux2"),
)
# kohya ss_base_model_version prefixes (sd-scripts library/*model_util.py, flux_utils.py).
_BASE_VERSIONS = (("sdxl", "sdxl"), ("sd_v1", "sd15"), ("sd_v2", "sd2"), ("flux2", "flux2"),
                  ("flux1", "flux_dev"))
# File-name patterns, most specific first.
_NAME_FAMILIES = (
    (re.compile(r"flux[._-]?2"), "flux2"),
    (re.compile(r"flux.*schnell|schnell"), "flux_schnell"),
    (re.compile(r"flux"), "flux_dev"),
    (re.compile(r"chroma"), "chroma"),
    (re.compile(r"qwen[._-]?image"), "qwen_image"),
    (re.compile(r"z[._-]?image[._-]?turbo"), "z_image_turbo"),
    (re.compile(r"z[._-]?image"), "z_image"),
    (re.compile(r"lumina"), "lumina2"),
    (re.compile(r"hidream"), "hidream"),
    (re.compile(r"auraflow"), "auraflow"),
    (re.compile(r"hunyuan[._-]?dit"), "hunyuan_dit"),
    (re.compile(r"pixart"), "pixart_sigma"),
    (re.compile(r"cascade"), "stable_cascade"),
    (re.compile(r"sd[._-]?3[._-]?5|sd3\.5"), "sd3"),
    (re.compile(r"sd[._-]?3"), "sd3"),
    (re.compile(r"v1[._-]5|sd[._-]?15|sd[._-]?1\.5"), "sd15"),
    (re.compile(r"v2[._-]1|sd[._-]?2"), "sd2"),
)
_STEPS_IN_NAME = re.compile(r"(\d{1,2})[-_ ]?steps?")
_METADATA_KEYS = ("modelspec.title", "modelspec.architecture", "ss_base_model_version",
                  "ss_sd_model_name", "ss_output_name")
# Metadata is written by whoever made the file: only this much of each value is matched, so a
# header of tens of MB costs no more than a real one.
_METADATA_CHARS = 1000


def detect_family(info: ModelInfo | None, family_hint: str = "auto") -> FamilyDetection:
    """The family of ``info``; ``family_hint`` other than "auto" wins (and must be a valid id)."""
    if family_hint and family_hint != "auto":
        profile = get_family(family_hint)
        return FamilyDetection(profile.id, 1.0, f"family set to {profile.id!r} by the family input")
    if info is None:
        return FamilyDetection(FALLBACK_FAMILY, 0.0, "no model information and family 'auto': "
                               f"using the generic {FALLBACK_FAMILY} profile")

    family, reason = _from_classes(info)
    confidence = 0.9
    if family is None:
        family, reason, confidence = _from_names(info)
    if family is None:
        return _fallback(info)
    family, reason = _refine_variant(family, reason, info)
    name_text = _name_text(info)
    if family == "sdxl":
        return _refine_sdxl(reason, info, name_text, confidence)
    return FamilyDetection(family, confidence, reason, _steps_hint(name_text))


def _from_classes(info: ModelInfo) -> tuple[str | None, str]:
    if info.config_class in _CONFIG_CLASSES:
        return _CONFIG_CLASSES[info.config_class], f"ComfyUI model config {info.config_class}"
    for cls in info.model_class_mro or [info.model_class]:
        if cls in _MODEL_CLASSES:
            return _MODEL_CLASSES[cls], f"ComfyUI model class {cls}"
        if cls == "BaseModel" and info.context_dim in _CONTEXT_DIMS:
            return _CONTEXT_DIMS[info.context_dim], f"UNet with context_dim {info.context_dim}"
    if not info.config_class and not info.model_class and info.context_dim in _CONTEXT_DIMS:
        return _CONTEXT_DIMS[info.context_dim], f"context_dim {info.context_dim}"
    return None, ""


def _from_names(info: ModelInfo) -> tuple[str | None, str, float]:
    """Without ComfyUI classes (the CLI, a file on disk): metadata first, then the file name."""
    architecture = _metadata_value(info, "modelspec.architecture").lower()
    for prefix, family in _ARCHITECTURES:
        if architecture.startswith(prefix):
            return family, f"modelspec.architecture {architecture!r}", 0.7
    base = _metadata_value(info, "ss_base_model_version").lower()
    for prefix, family in _BASE_VERSIONS:
        if base.startswith(prefix):
            return family, f"ss_base_model_version {base!r}", 0.7
    name = info.checkpoint_name.lower()
    for pattern, family in _NAME_FAMILIES:
        match = pattern.search(name)
        if match:
            return family, f"{match.group(0)!r} in the checkpoint name", 0.5
    if "xl" in name or any(pattern.search(name) for pattern, _family in _SDXL_VARIANTS):
        return "sdxl", "an SDXL-class checkpoint name (no model classes to check)", 0.5
    return None, "", 0.0


def _refine_variant(family: str, reason: str, info: ModelInfo) -> tuple[str, str]:
    """Variants that share one ComfyUI class, told apart by unet_config and the file name."""
    unet = info.unet_config
    name = _name_text(info)
    if family == "flux_dev" and info.guidance_embed is False:
        return "flux_schnell", reason + "; no guidance embedding (schnell)"
    if family == "flux_dev" and "schnell" in name:
        return "flux_schnell", reason + "; 'schnell' in the checkpoint name"
    if family == "sd3":
        if unet.get("depth") == 38 or "large" in name:
            turbo = "turbo" in name
            return ("sd35_large_turbo" if turbo else "sd35_large"), reason + (
                "; 38 MMDiT blocks (3.5 Large)" if unet.get("depth") == 38 else "; 'large' in the name") + (
                "; 'turbo' in the name" if turbo else "")
        if unet.get("x_block_self_attn_layers") or "3.5" in name or "sd35" in name:
            return "sd35_medium", reason + "; MMDiT-X self-attention layers or '3.5' in the name (3.5 Medium)"
    if family == "flux2":
        hidden = unet.get("hidden_size")
        if (isinstance(hidden, int) and hidden < 6144) or "klein" in name:
            why = f"; hidden size {hidden} (klein)" if isinstance(hidden, int) else "; 'klein' in the name"
            if "base" in name:
                return "flux2_klein_base", reason + why + "; 'base' in the name (undistilled)"
            return "flux2_klein", reason + why
    if family == "z_image_turbo" and info.checkpoint_name and "turbo" not in name:
        return "z_image", reason + "; no 'turbo' in the checkpoint name (Z-Image base)"
    if family == "hidream":
        if "fast" in name:
            return "hidream_fast", reason + "; 'fast' in the name"
        if "dev" in name:
            return "hidream_dev", reason + "; 'dev' in the name"
    if info.config_class == "SDXLRefiner":
        return family, reason + " (an SDXL refiner: meant for img2img after the base model)"
    return family, reason


def _refine_sdxl(reason: str, info: ModelInfo, name_text: str, confidence: float) -> FamilyDetection:
    if info.model_type == "EDM":
        return FamilyDetection("playground25", confidence, reason + "; EDM model type (Playground v2.5)")
    for pattern, family in _SDXL_VARIANTS:
        match = pattern.search(name_text)
        if match:
            where = "checkpoint metadata" if pattern.search(_metadata_text(info)) else "checkpoint name"
            return FamilyDetection(family, min(confidence, 0.8),
                                   f"{reason}; {match.group(0)!r} in the {where}", _steps_hint(name_text))
    extra = ""
    if info.model_type in ("V_PREDICTION", "V_PREDICTION_EDM"):
        extra = "; v-prediction SDXL (NoobAI-style), consider family 'illustrious'"
    return FamilyDetection("sdxl", confidence, reason + extra)


def _fallback(info: ModelInfo) -> FamilyDetection:
    known = [c for c in [info.config_class, info.model_class, *info.model_class_mro] if c in _NO_PROFILE]
    what = f"ComfyUI class {known[0]} has no txt2img profile" if known else (
        f"unrecognised model (config {info.config_class or '?'}, class {info.model_class or '?'})")
    if info.model_type == "FLOW" or known:
        return FamilyDetection("generic_flow", 0.0, f"{what}: using the generic flow-matching profile; "
                               "set the family input if you know better")
    return FamilyDetection(FALLBACK_FAMILY, 0.0, f"{what}: using the generic {FALLBACK_FAMILY} profile; "
                           "set the family input if you know better")


def _metadata_value(info: ModelInfo, key: str) -> str:
    return str(info.metadata.get(key, ""))[:_METADATA_CHARS]


def _metadata_text(info: ModelInfo) -> str:
    return " ".join(_metadata_value(info, k) for k in _METADATA_KEYS).lower()


def _name_text(info: ModelInfo) -> str:
    return f"{info.checkpoint_name} {_metadata_text(info)}".lower()


def _steps_hint(text: str) -> int | None:
    match = _STEPS_IN_NAME.search(text)
    return int(match.group(1)) if match else None
