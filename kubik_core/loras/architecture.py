"""Which base architecture a LoRA was trained for.

Evidence, best first (see /work/shared/notes/prompting-loras.md for the sources):

1. CivitAI ``baseModel`` from a sidecar: the only source that tells Pony and Illustrious apart
   from plain SDXL (they share SDXL's architecture).
2. ``modelspec.architecture`` (SAI ModelSpec, written by kohya sd-scripts), then kohya's
   ``ss_base_model_version`` / ``ss_v2``, then the A1111 sidecar's ``sd version``.
3. Tensor key names: kohya SDXL names UNet blocks the SGM way (``input_blocks``) and has two text
   encoders (``lora_te1_``/``lora_te2_``); SD1/2 kohya and diffusers use ``down_blocks``; Flux
   has ``double_blocks``/``single_blocks`` (or diffusers ``single_transformer_blocks``), SD3
   ``joint_blocks``.
4. Shapes: the cross-attention key/value input width is the text encoder's width: 768 SD1,
   1024 SD2, 2048 SDXL (InvokeAI model_util.py).
5. The file name ("xl", "pony", "flux"...).

``base`` matches the ``group`` of kubik_core.params families (sd1, sd2, sdxl, sd3, flux,
flux2...); ``variant`` is pony / illustrious / noobai where the evidence says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

UNKNOWN = "unknown"
# base architecture -> label for people
BASE_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sd3": "SD 3.x", "flux": "FLUX.1",
               "flux2": "FLUX.2", "lumina2": "Lumina 2", "qwen_image": "Qwen-Image",
               "hunyuan_dit": "Hunyuan-DiT", "pixart": "PixArt", "auraflow": "AuraFlow",
               "stable_cascade": "Stable Cascade", "z_image": "Z-Image", "hidream": "HiDream",
               UNKNOWN: "unknown"}
# SDXL derivatives whose LoRAs rarely transfer to plain SDXL (and back).
VARIANTS = ("pony", "illustrious", "noobai")


@dataclass(frozen=True)
class Architecture:
    base: str = UNKNOWN
    variant: str = ""
    source: str = ""     # which evidence decided: "civitai", "modelspec", "kohya", "keys", ...

    @property
    def label(self) -> str:
        name = BASE_LABELS.get(self.base, self.base)
        return f"{name} ({self.variant})" if self.variant else name


# CivitAI baseModel strings ("SD 1.5", "SDXL 1.0", "Pony", "Illustrious", "NoobAI", "Flux.1 D",
# "SD 3.5 Large"...), matched in order on the lower-cased value.
_CIVITAI_BASES = (
    ("pony", ("sdxl", "pony")), ("illustrious", ("sdxl", "illustrious")),
    ("noobai", ("sdxl", "noobai")), ("sdxl", ("sdxl", "")), ("playground", ("sdxl", "")),
    ("flux.2", ("flux2", "")), ("flux.1", ("flux", "")), ("flux", ("flux", "")),
    ("chroma", ("flux", "")), ("sd 3", ("sd3", "")), ("sd 2", ("sd2", "")),
    ("sd 1", ("sd1", "")), ("lumina", ("lumina2", "")), ("qwen", ("qwen_image", "")),
    ("hunyuan 1", ("hunyuan_dit", "")), ("pixart", ("pixart", "")), ("aura", ("auraflow", "")),
    ("stable cascade", ("stable_cascade", "")), ("zimage", ("z_image", "")),
    ("z-image", ("z_image", "")), ("hidream", ("hidream", "")),
)
# modelspec.architecture ids (kohya library/sai_model_spec.py), "/lora" suffix stripped.
_MODELSPEC_BASES = (
    ("stable-diffusion-xl", "sdxl"), ("stable-diffusion-v1", "sd1"), ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-3", "sd3"), ("flux-2", "flux2"), ("flux-1", "flux"), ("flux", "flux"),
    ("lumina", "lumina2"),
)
# kohya ss_base_model_version values: sd_v1, sd_v2, sd_v2_v, sdxl_base_v1-0, flux1, flux2*...
_KOHYA_BASES = (("sdxl", "sdxl"), ("sd_v1", "sd1"), ("sd_v2", "sd2"), ("sd3", "sd3"),
                ("flux2", "flux2"), ("flux", "flux"), ("lumina", "lumina2"))
_FILENAME_HINTS = (
    (re.compile(r"pony|pdxl", re.I), ("sdxl", "pony")),
    (re.compile(r"illustrious|\billu\b|noob", re.I), ("sdxl", "illustrious")),
    (re.compile(r"flux", re.I), ("flux", "")),
    (re.compile(r"sdxl|(^|[^a-z])xl([^a-z]|$)", re.I), ("sdxl", "")),
    (re.compile(r"sd3|sd35", re.I), ("sd3", "")),
    (re.compile(r"sd15|sd1\.5|sd_15", re.I), ("sd1", "")),
)
# Width of the text conditioning seen by cross-attention key/value projections.
_CONTEXT_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_CROSS_ATTN_KV = re.compile(r"attn2[._](processor[._])?to_[kv]")


def from_civitai_base(value: str) -> Architecture | None:
    text = value.strip().lower()
    if not text:
        return None
    for needle, (base, variant) in _CIVITAI_BASES:
        if needle in text:
            return Architecture(base, variant, "civitai")
    return None


def detect_architecture(metadata: dict[str, str], tensors: dict[str, tuple[str, tuple[int, ...]]],
                        civitai_base: str = "", a1111_version: str = "",
                        filename: str = "") -> Architecture:
    """The best-supported base architecture for one LoRA (``unknown`` if nothing tells)."""
    from_sidecar = from_civitai_base(civitai_base) if civitai_base else None
    if from_sidecar is not None:
        return from_sidecar
    spec = metadata.get("modelspec.architecture", "").lower().split("/")[0]
    for needle, base in _MODELSPEC_BASES:
        if spec.startswith(needle):
            return Architecture(base, _variant_from_names(metadata, filename), "modelspec")
    kohya = metadata.get("ss_base_model_version", "").lower()
    for needle, base in _KOHYA_BASES:
        if needle in kohya:
            return Architecture(base, _variant_from_names(metadata, filename), "kohya")
    if metadata.get("ss_v2", "").lower() == "true":
        return Architecture("sd2", "", "kohya")
    if a1111_version:
        version = a1111_version.strip().lower()
        mapped = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl"}.get(version)
        if mapped:
            return Architecture(mapped, _variant_from_names(metadata, filename), "a1111")
    by_keys = _from_keys(tensors)
    if by_keys is not None:
        return Architecture(by_keys, _variant_from_names(metadata, filename), "keys")
    for pattern, (base, variant) in _FILENAME_HINTS:
        if pattern.search(filename):
            return Architecture(base, variant, "filename")
    return Architecture()


def _variant_from_names(metadata: dict[str, str], filename: str) -> str:
    """Pony/Illustrious from the base checkpoint kohya trained on, else from the file name, else
    from Pony's own caption tags ("score_9") among the training tags."""
    text = f"{metadata.get('ss_sd_model_name', '')} {filename}".lower()
    if "pony" in text or "pdxl" in text:
        return "pony"
    if "noob" in text:
        return "noobai"
    if "illustrious" in text:
        return "illustrious"
    return "pony" if '"score_9"' in metadata.get("ss_tag_frequency", "") else ""


def _from_keys(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> str | None:
    if not tensors:
        return None
    keys = tensors.keys()
    joined = "\n".join(keys)
    if "double_blocks" in joined or "single_blocks" in joined or "single_transformer_blocks" in joined:
        return "flux"
    if "joint_blocks" in joined or "context_block" in joined:
        return "sd3"
    if ("lora_te1_" in joined or "lora_te2_" in joined or "text_encoder_2." in joined
            or "input_blocks" in joined):
        return "sdxl"
    # Cross-attention k/v input width: kohya lora_down [rank, in], peft lora_A [rank, in].
    for key in keys:
        if _CROSS_ATTN_KV.search(key) and ("lora_down" in key or "lora_A" in key or "lora.down" in key):
            shape = tensors[key][1]
            if len(shape) == 2 and shape[1] in _CONTEXT_WIDTHS:
                return _CONTEXT_WIDTHS[shape[1]]
    if "down_blocks" in joined or "lora_te_" in joined:
        return "sd1"
    return None


def compatibility(arch: Architecture, family_group: str, family_id: str, allow_other_variants: bool = False,
                  variant_known: bool = True) -> tuple[str, float, str]:
    """(problem, score factor, note) of a LoRA on a model of ``family_group``/``family_id``;
    ``problem`` is "" when the LoRA may be used.

    Different base architectures cannot be combined (the weights do not fit): "other base
    architecture". Within SDXL, Pony, Illustrious (NoobAI is trained from it) and plain SDXL
    share the architecture but not what the weights mean: a Pony LoRA on plain SDXL, an SDXL
    LoRA on Pony or an Illustrious LoRA on SDXL loads and gives poor images, so it is "other
    SDXL variant" unless ``allow_other_variants``, which keeps it at a lower score. A LoRA whose
    variant nothing records (no CivitAI base model, no training checkpoint name: only its keys
    say SDXL) is kept at a slightly lower score, with a note.
    """
    if arch.base == UNKNOWN:
        return "", 0.7, "base architecture unknown; kept with a lower score"
    if arch.base != family_group:
        return "other base architecture", 0.0, (f"made for {arch.label}, the model is "
                                                f"{BASE_LABELS.get(family_group, family_group)}")
    family_variant = family_id if family_id in VARIANTS else ""
    lora_variant = "illustrious" if arch.variant == "noobai" else arch.variant
    if family_group == "sdxl" and not lora_variant and not variant_known:
        return "", 0.9, "SDXL LoRA whose variant (plain, Pony, Illustrious) nothing records"
    if lora_variant != family_variant:
        made_for = arch.variant or "plain SDXL"
        note = f"made for {made_for}, the model is {family_id}"
        if not allow_other_variants:
            return "other SDXL variant", 0.0, note
        return "", 0.6, note + ": may transfer poorly"
    return "", 1.0, ""
