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

Names are read as words (``name_words``: separators, camelCase and digit runs split, so
"juggernautXL_v9Lightning" reads juggernaut / xl / v / 9 / lightning), never matched against a
list of model names. The words say:

* a distillation (lightning, turbo, hyper, lcm) and whether the file is the distiller's own
  release (ByteDance's sdxl_lightning_4step, Stability's sd_xl_turbo_1.0) or a community merge,
  which has words of its own (a model name: "juggernaut", "realvisxl", "dreamshaper"): merges
  are sampled the way their makers publish (family sdxl_fast_merge), not with the base recipe;
* a step count ("4step", "8-steps"), which sets the steps of a step-distilled model;
* "1step" with Hyper-SDXL: its one-step UNet recipe (``recipe`` "hyper_sdxl_1step");
* a sampler ("DPMSDE", "euler"), used when the model is step-distilled;
* v-prediction ("vPred", "v-pred", "v_prediction"), or ComfyUI's V_PREDICTION model type:
  ancestral samplers are replaced by Euler, as v-prediction models ask.

Anything unrecognised gets the documented fallback: the generic flow profile for flow-matching
models, else the SDXL profile, with confidence 0 and a reason saying so. Never an exception,
except for a family name the user typed that does not exist.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .families import FALLBACK_FAMILY, get_family
from .plan import ModelInfo


@dataclass(frozen=True)
class FamilyDetection:
    family: str
    confidence: float      # 1.0 chosen by the user, ~0.9 from ComfyUI's classes, 0 = fallback
    reason: str
    steps_hint: int | None = None  # step count a distilled checkpoint's name announces ("4step")
    sampler_hint: str | None = None  # KSampler sampler a distilled checkpoint's name announces
    v_prediction: bool = False       # a v-prediction checkpoint (name or ComfyUI's model type)
    recipe: str | None = None        # a model-specific recipe (RECIPES), e.g. "hyper_sdxl_1step"


@dataclass(frozen=True)
class NameReading:
    """What a checkpoint's name (and metadata text) says, read as words."""

    words: tuple[str, ...]
    distillation: str | None       # "lightning", "hyper", "turbo", "lcm"
    own_words: tuple[str, ...]     # words that are no format, version or distillation: a model name
    steps: int | None
    sampler: str | None
    v_prediction: bool

    @property
    def merge(self) -> bool:
        """A community checkpoint built on a distillation (it has a model name of its own)."""
        return self.distillation in ("lightning", "hyper", "turbo") and bool(self.own_words)


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

# SDXL look-alikes other than distillations (read as words first, see read_name: a "pony
# lightning" merge samples like Lightning): (pattern on name + metadata, family), first match wins.
_SDXL_VARIANTS = (
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
# Words of checkpoint names that say nothing about which model it is: formats, precisions,
# versions, packaging, distillations, step counts and sampler names (a name left with other
# words has a model name of its own).
_NEUTRAL_WORDS = frozenset({
    "sd", "sdxl", "xl", "sd1", "sd15", "base", "model", "checkpoint", "ckpt", "safetensors", "pt",
    "unet", "lora", "fp16", "fp32", "bf16", "fp8", "e4m3fn", "e5m2", "pruned", "ema", "emaonly",
    "noema", "full", "fix", "fixed", "vae", "bakedvae", "baked", "nsfw", "sfw", "final", "version",
    "v", "comfyui", "comfy", "cfg", "step", "steps", "lightning", "hyper", "turbo", "lcm", "dpm",
    "dpmsde", "dpmpp", "sde", "karras", "euler", "a", "by", "and", "the", "of", "x", "fp", "inpainting",
    "1", "stabilityai", "bytedance", "fast", "distilled", "merge", "merged", "mix",
})
# Name words announcing a sampler (KSampler names): community merges put their maker's sampler there.
_SAMPLER_WORDS = {"dpmsde": "dpmpp_sde", "dpmppsde": "dpmpp_sde", "euler": "euler"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_METADATA_KEYS = ("modelspec.title", "modelspec.architecture", "ss_base_model_version",
                  "ss_sd_model_name", "ss_output_name")
# Metadata is written by whoever made the file: only this much of each value is matched, so a
# header of tens of MB costs no more than a real one.
_METADATA_CHARS = 1000


def detect_family(info: ModelInfo | None, family_hint: str = "auto") -> FamilyDetection:
    """The family of ``info``; ``family_hint`` other than "auto" wins (and must be a valid id)."""
    if family_hint and family_hint != "auto":
        profile = get_family(family_hint)
        reason = f"family set to {profile.id!r} by the family input"
        if info is None:
            return FamilyDetection(profile.id, 1.0, reason)
        return _with_name_hints(FamilyDetection(profile.id, 1.0, reason), info)
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
    if family == "sdxl":
        return _with_name_hints(_refine_sdxl(reason, info, _name_text(info), confidence), info)
    return _with_name_hints(FamilyDetection(family, confidence, reason), info)


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
    if ("xl" in name or read_name(name).distillation == "lightning"
            or any(pattern.search(name) for pattern, _family in _SDXL_VARIANTS)):
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
    reading = _reading(info)
    if reading.distillation is not None:
        where = "checkpoint name" if read_name(info.checkpoint_name).distillation else "checkpoint metadata"
        said = f"{reason}; {reading.distillation!r} in the {where}"
        if reading.merge:
            return FamilyDetection("sdxl_fast_merge", min(confidence, 0.8), said + (
                f", with a model name of its own ({' '.join(reading.own_words[:3])}): a community "
                f"merge of a {reading.distillation.capitalize()} model, sampled as its makers publish"))
        if reading.distillation == "hyper" and reading.steps == 1:
            return FamilyDetection("sdxl_hyper", min(confidence, 0.8), said + "; '1step': the one-step UNet",
                                   recipe="hyper_sdxl_1step")
        family = {"lightning": "sdxl_lightning", "hyper": "sdxl_hyper", "turbo": "sdxl_turbo",
                  "lcm": "sdxl_lcm"}[reading.distillation]
        return FamilyDetection(family, min(confidence, 0.8), said)
    for pattern, family in _SDXL_VARIANTS:
        match = pattern.search(name_text)
        if match:
            where = "checkpoint metadata" if pattern.search(_metadata_text(info)) else "checkpoint name"
            return FamilyDetection(family, min(confidence, 0.8), f"{reason}; {match.group(0)!r} in the {where}")
    extra = ""
    if info.model_type in ("V_PREDICTION", "V_PREDICTION_EDM"):
        extra = "; v-prediction SDXL (NoobAI-style), consider family 'illustrious'"
    return FamilyDetection("sdxl", confidence, reason + extra)


def _reading(info: ModelInfo) -> NameReading:
    """The name read as words; the distillation may also come from the metadata, the model's
    own words only from the file name (metadata repeats "stable diffusion xl" and the like)."""
    name = read_name(info.checkpoint_name.replace("\\", "/").rsplit("/", 1)[-1])
    meta = read_name(_metadata_text(info))
    return replace(name, distillation=name.distillation or meta.distillation,
                   steps=name.steps or meta.steps, sampler=name.sampler or meta.sampler,
                   v_prediction=name.v_prediction or meta.v_prediction)


def _with_name_hints(detection: FamilyDetection, info: ModelInfo) -> FamilyDetection:
    """``detection`` with what the name says beyond the family: steps, sampler, v-prediction."""
    reading = _reading(info)
    v_prediction = reading.v_prediction or info.model_type in ("V_PREDICTION", "V_PREDICTION_EDM")
    return replace(detection, steps_hint=reading.steps, sampler_hint=reading.sampler,
                   v_prediction=v_prediction)


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


def name_words(text: str) -> tuple[str, ...]:
    """``text`` as lower-case words: separators, camelCase, ALLCAPS runs and digit runs split
    ("dreamshaperXL_lightningDPMSDE" -> dreamshaper, xl, lightning, dpmsde)."""
    return tuple(word.lower() for word in _WORD.findall(text[:_METADATA_CHARS * 6]))


def _strip_distillation(word: str) -> str:
    """A word less a distillation glued to its end ("sdxllightning" -> "sdxl")."""
    for suffix in ("lightning", "turbo"):
        if word.endswith(suffix) and word != suffix:
            return word[:-len(suffix)]
    return word


def read_name(text: str) -> NameReading:
    """What a checkpoint name says about the model (see the module docstring)."""
    words = name_words(text)
    distillation = None
    for index, word in enumerate(words):
        if word in ("lightning", "turbo", "lcm"):
            distillation = distillation or word
        elif word.endswith(("lightning", "turbo")) and len(word) > 5:   # "XLLIGHTNING", one capital run
            distillation = distillation or ("lightning" if word.endswith("lightning") else "turbo")
        elif word == "hyper" or word.startswith("hypersd"):
            # "hyper" is also an English prefix ("hyperRealism"): a distillation only when what
            # follows is no word of its own (a format, a step count, the end of the name).
            following = words[index + 1] if index + 1 < len(words) else ""
            if word != "hyper" or not following or following.isdigit() or following in _NEUTRAL_WORDS:
                distillation = distillation or "hyper"
    steps = None
    for first, second in zip(words, words[1:]):
        if first.isdigit() and second in ("step", "steps") and 0 < int(first) <= 64:
            steps = int(first)
            break
    v_prediction = any(word in ("vpred", "vprediction") for word in words) or any(
        first == "v" and second in ("pred", "prediction") for first, second in zip(words, words[1:]))
    sampler = next((_SAMPLER_WORDS[word] for word in words if word in _SAMPLER_WORDS), None)
    if sampler is None and any(first == "dpm" and second == "sde" for first, second in zip(words, words[1:])):
        sampler = "dpmpp_sde"
    own = tuple(word for word in words if not word.isdigit() and len(word) > 2
                and _strip_distillation(word) not in _NEUTRAL_WORDS
                and word not in ("pred", "prediction", "vpred", "vprediction"))
    return NameReading(words, distillation, own, steps, sampler, v_prediction)
