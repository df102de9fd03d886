"""ControlNet and IP-Adapter advice: which control type, how strong, over which part of sampling.

    from kubik_core.params.control import advise_control
    advice = advise_control(analysis, family="flux_dev", control_type="auto")
    advice.strength, advice.start_percent, advice.end_percent, advice.ip_adapter_weight

The values feed ComfyUI's core ControlNetApplyAdvanced (strength, start_percent, end_percent)
and the weight input of an IP-Adapter node. As in families.py every value carries its source
right beside it; a source that starts with "convention" is no maker's figure (the reasons call
only the others "published").

Where the values come from (each checked at the address given):

* SD1.5 - lllyasviel's ControlNet 1.1 demos (github.com/lllyasviel/ControlNet-v1-1-nightly,
  gradio_canny.py and its siblings): "Control Strength" slider, default 1.0, range 0-2. The
  demos apply control at every step; no start/end is published.
* SDXL - model cards: diffusers/controlnet-canny-sdxl-1.0 (huggingface.co/diffusers/
  controlnet-canny-sdxl-1.0: controlnet_conditioning_scale = 0.5 "recommended for good
  generalization"); xinsir/controlnet-openpose-sdxl-1.0 (huggingface.co/xinsir/
  controlnet-openpose-sdxl-1.0: controlnet_conditioning_scale = 1.0). Other types and the
  start/end are convention.
* FLUX.1 - Shakker-Labs FLUX.1-dev-ControlNet-Union-Pro-2.0 (huggingface.co/Shakker-Labs/
  FLUX.1-dev-ControlNet-Union-Pro-2.0, "Recommended parameters"): canny and soft edge 0.7 with
  control_guidance_end 0.8, depth 0.8 / 0.8, pose 0.9 / 0.65, gray 0.9 / 0.8. Files named after
  other FLUX ControlNets get their own card's figure (MODEL_CARDS): InstantX/
  FLUX.1-dev-Controlnet-Canny's demo uses 0.6; Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro
  (v1, with InstantX) recommends 0.3-0.8. TheMistoAI's MistoLine_Flux.dev (files named
  *mistoline*, for any line art): 0.6, the floor of its README's recommended 0.6-0.85 and the
  0.6-0.7 it recommends with Anyline line art (github.com/TheMistoAI/MistoControlNet-Flux-dev),
  over every step as its sampler adds it.
* XLabs-AI's FLUX ControlNets (flux-canny/depth/hed-controlnet v3, told by their keys, not their
  name: ``xlabs=True``) - XLabs' own ComfyUI workflows (github.com/XLabs-AI/x-flux-comfyui,
  workflows/flux-controlnet-{canny,depth,hed}-v3-workflow.json): Apply Flux ControlNet strength
  0.7, 25 steps; its node applies the ControlNet from 0.0 to 1.0 (nodes.py), as x-flux's
  denoise_controlnet does at every step (x-flux main.py's --control_weight defaults to 0.8).
* SD3/SD3.5 - Stability AI's reference code for its SD3.5 Large ControlNets (github.com/
  Stability-AI/sd3.5: sd3_impls.py calls the ControlNet with scale 1 at every step; sd3_infer.py
  samples the blur, canny and depth ControlNets 60 steps, CFG 3.5, euler): canny, depth and tile
  (the blur ControlNet, for tiled upscaling) 1.0 over the whole schedule. Pose: InstantX/
  SD3-Controlnet-Pose's demo (control_weight=0.7). Files named after other SD3 ControlNets get
  their card's figure: InstantX/SD3-Controlnet-Canny 0.7 (diffusers' StableDiffusion3ControlNetPipeline
  example), tensorart/SD3.5M-Controlnet-Canny 0.8.
* IP-Adapter - tencent-ailab/IP-Adapter README, "Best Practice": scale 1.0 with the image prompt
  alone (empty or generic text), about 0.5 for image + text prompts. FLUX.1 (XLabs-AI's
  flux-ip-adapter v1/v2, the IP-Adapters FLUX has): 1.0 with or without a text prompt, the
  default ip_scale of XLabs-AI/x-flux main.py, whose README example pairs it with the text "wearing
  glasses"; diffusers' FLUX IP-Adapter example sets the same 1.0 ("wearing sunglasses"). SD3/SD3.5
  (InstantX's SD3.5-Large-IP-Adapter, the IP-Adapter SD3.5 has): 0.5, its model card's inference
  example (ipadapter_scale=0.5 with the text "a cat", CFG 5, 24 steps), with or without a text
  prompt as the card gives no other figure. FLUX.1 with InstantX's FLUX.1-dev-IP-Adapter (instead
  of XLabs'): 0.7, the scale of InstantX's inference script and card example (INSTANTX_FLUX_IP_WEIGHT;
  kubik generate tells the adapter by its keys).

Adjustments by the prompt (convention, said in the reason): "auto" picks the control type from
the analysis (a posed figure -> pose, a place -> depth, line art styles -> lineart, else canny);
a detailed prompt (overall complexity >= 0.6) ends the control 0.1 earlier, never before 0.5, so
the last steps follow the prompt's details instead of the control image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ParamsError
from .families import get_family, is_published
from .plan import Decision

CONTROL_TYPES = ("canny", "softedge", "lineart", "scribble", "depth", "pose", "tile", "gray")
CONTROL_FIELDS = ("control_type", "strength", "start_percent", "end_percent", "ip_adapter_weight")
DETAILED_PROMPT = 0.6     # overall complexity from which the control ends earlier (convention)
EARLIER_END = 0.1
LATEST_EARLY_END = 0.5

_CN11 = ("lllyasviel/ControlNet-v1-1-nightly gradio_{demo}.py (Control Strength slider default 1.0, "
         "range 0-2) https://github.com/lllyasviel/ControlNet-v1-1-nightly")
_CN11_SCHEDULE = ("convention: the ControlNet 1.1 demos apply control at every step; no start/end "
                  "is published (ComfyUI's ControlNetApplyAdvanced defaults 0.0/1.0)")
_SDXL_CANNY = ("HF diffusers/controlnet-canny-sdxl-1.0 (controlnet_conditioning_scale = 0.5 'recommended "
               "for good generalization') https://huggingface.co/diffusers/controlnet-canny-sdxl-1.0")
_SDXL_POSE = ("HF xinsir/controlnet-openpose-sdxl-1.0 (controlnet_conditioning_scale = 1.0) "
              "https://huggingface.co/xinsir/controlnet-openpose-sdxl-1.0")
_SDXL_OTHER = ("convention: diffusers' SDXL canny card's 0.5 'for good generalization' "
               "(https://huggingface.co/diffusers/controlnet-canny-sdxl-1.0) carried over to this type")
_SDXL_SCHEDULE = "convention: no SDXL ControlNet card publishes a start/end; full schedule"
_UNION2 = ("HF Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0 recommended parameters ({what}) "
           "https://huggingface.co/Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0")
_UNION2_START = ("diffusers FluxControlNetPipeline control_guidance_start default 0.0 (the Union-Pro 2.0 "
                 "card sets only control_guidance_end)")
_SD35_REFERENCE = ("Stability-AI/sd3.5 reference code (sd3_impls.py applies the SD3.5 Large ControlNets at scale 1 "
                   "at every step) https://github.com/Stability-AI/sd3.5")
_SD3_POSE = ("HF InstantX/SD3-Controlnet-Pose demo (control_weight=0.7) "
             "https://huggingface.co/InstantX/SD3-Controlnet-Pose")
_SD3_SCHEDULE = "convention: InstantX's SD3 demos set no start/end; full schedule"
_OTHER_FAMILY = ("convention: no ControlNet values are published for this family here; ComfyUI's "
                 "ControlNetApplyAdvanced defaults (strength 1.0, 0.0-1.0)")
_IPA_README = ("tencent-ailab/IP-Adapter README, Best Practice: 'scale=1.0' with the image prompt alone, "
               "'scale=0.5' for image + text prompts https://github.com/tencent-ailab/IP-Adapter")
_XLABS_IPA = ("XLabs-AI/x-flux main.py (--ip_scale default 1.0; the README's IP-Adapter example runs it with the "
              "text 'wearing glasses') https://github.com/XLabs-AI/x-flux; diffusers' FLUX IP-Adapter example: "
              "set_ip_adapter_scale(1.0) https://huggingface.co/docs/diffusers/api/pipelines/flux")
INSTANTX_FLUX_IP_WEIGHT = (0.7, "published for InstantX's FLUX.1-dev IP-Adapter (its example, with a text prompt): 0.7",
                           "HF InstantX/FLUX.1-dev-IP-Adapter infer_flux_ipa_siglip.py and model card example "
                           "(scale=0.7 with the text 'a young girl') "
                           "https://huggingface.co/InstantX/FLUX.1-dev-IP-Adapter")
_INSTANTX_SD3_IPA = ("HF InstantX/SD3.5-Large-IP-Adapter model card, Inference example (ipadapter_scale=0.5 with the "
                     "text 'a cat', guidance_scale=5.0, 24 steps) "
                     "https://huggingface.co/InstantX/SD3.5-Large-IP-Adapter")


@dataclass(frozen=True)
class ControlSetting:
    """One published (or conventional) setting: strength and schedule, each with its source."""

    strength: float
    end: float
    strength_source: str
    schedule_source: str
    start: float = 0.0


def _cn11(demo: str) -> ControlSetting:
    return ControlSetting(1.0, 1.0, _CN11.format(demo=demo), _CN11_SCHEDULE)


def _union2(strength: float, end: float, what: str, convention: str = "") -> ControlSetting:
    source = _UNION2.format(what=what)
    if convention:
        source = f"convention: {convention}; {source}"
    return ControlSetting(strength, end, source, source)


# Settings per base architecture (FamilyProfile.group) and control type. A type missing from a
# group has no maker's model for it there: advise_control says so and uses the nearest type.
SETTINGS: dict[str, dict[str, ControlSetting]] = {
    "sd1": {
        "canny": _cn11("canny"), "softedge": _cn11("softedge"), "lineart": _cn11("lineart"),
        "scribble": _cn11("scribble"), "depth": _cn11("depth"), "pose": _cn11("openpose"),
        "tile": _cn11("tile"),
    },
    "sdxl": {
        "canny": ControlSetting(0.5, 1.0, _SDXL_CANNY, _SDXL_SCHEDULE),
        "pose": ControlSetting(1.0, 1.0, _SDXL_POSE, _SDXL_SCHEDULE),
        **{kind: ControlSetting(0.5, 1.0, _SDXL_OTHER, _SDXL_SCHEDULE)
           for kind in ("softedge", "lineart", "scribble", "depth", "tile")},
    },
    "flux": {
        "canny": _union2(0.7, 0.8, "canny: controlnet_conditioning_scale 0.7, control_guidance_end 0.8"),
        "softedge": _union2(0.7, 0.8, "soft edge: 0.7, end 0.8"),
        "depth": _union2(0.8, 0.8, "depth: 0.8, end 0.8"),
        "pose": _union2(0.9, 0.65, "pose: 0.9, end 0.65"),
        "gray": _union2(0.9, 0.8, "gray: 0.9, end 0.8"),
        "lineart": _union2(0.7, 0.8, "soft edge: 0.7, end 0.8",
                           "line art drawn as a soft edge map, the nearest Union-Pro 2.0 mode"),
        "scribble": _union2(0.7, 0.8, "soft edge: 0.7, end 0.8",
                            "a scribble drawn as a soft edge map, the nearest Union-Pro 2.0 mode"),
    },
    "sd3": {
        **{kind: ControlSetting(1.0, 1.0, _SD35_REFERENCE, _SD35_REFERENCE) for kind in ("canny", "depth", "tile")},
        "pose": ControlSetting(0.7, 1.0, _SD3_POSE, _SD3_SCHEDULE),
    },
}
# Control types of one group that stand in for a missing one (first available wins).
_NEAREST = {"gray": ("tile", "depth"), "tile": ("gray", "softedge"), "lineart": ("softedge", "canny"),
            "scribble": ("softedge", "canny"), "softedge": ("canny",), "pose": ("depth",),
            "depth": ("canny",), "canny": ("softedge",)}


@dataclass(frozen=True)
class ModelCard:
    """A specific ControlNet whose card publishes its own figure, told by its file name."""

    name_parts: tuple[str, ...]   # all must appear in the lower-cased file name
    group: str
    control_types: tuple[str, ...]
    strength: float
    source: str
    end: float | None = None      # None: the card sets no end (full schedule)


MODEL_CARDS = (
    ModelCard(("instantx", "canny"), "flux", ("canny",), 0.6,
              "HF InstantX/FLUX.1-dev-Controlnet-Canny demo (controlnet_conditioning_scale=0.6) "
              "https://huggingface.co/InstantX/FLUX.1-dev-Controlnet-Canny"),
    *(ModelCard(parts, "sd3", ("canny",), 0.7,
                "diffusers StableDiffusion3ControlNetPipeline example with InstantX/SD3-Controlnet-Canny "
                "(controlnet_conditioning_scale=0.7) https://huggingface.co/InstantX/SD3-Controlnet-Canny")
      for parts in (("instantx", "canny"), ("sd3-controlnet-canny",))),
    ModelCard(("sd3.5m", "canny"), "sd3", ("canny",), 0.8,
              "HF tensorart/SD3.5M-Controlnet-Canny (controlnet_conditioning_scale=0.8) "
              "https://huggingface.co/tensorart/SD3.5M-Controlnet-Canny"),
    ModelCard(("mistoline",), "flux", ("lineart", "softedge", "scribble", "canny"), 0.6,
              "TheMistoAI/MistoControlNet-Flux-dev README (MistoLine_Flux.dev_v1): 'controlnet strength: "
              "0.6~0.85', 'Recommended: Anyline with 0.6~0.7', 'try 0.5 as the starting controlnet strength'; "
              "its sampler (modules/utils.py denoise_controlnet) adds the ControlNet at every step "
              "https://github.com/TheMistoAI/MistoControlNet-Flux-dev", end=1.0),
)
_UNION_V1 = ("HF Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro (v1, with InstantX): 'The recommended "
             "controlnet_conditioning_scale is 0.3-0.8' https://huggingface.co/Shakker-Labs/"
             "FLUX.1-dev-ControlNet-Union-Pro")


_XLABS_STRENGTH = ("XLabs-AI/x-flux-comfyui workflows/flux-controlnet-{canny,depth,hed}-v3-workflow.json: Apply "
                   "Flux ControlNet strength 0.7 (x-flux main.py --control_weight default 0.8) "
                   "https://github.com/XLabs-AI/x-flux-comfyui")
_XLABS_SCHEDULE = ("XLabs-AI/x-flux-comfyui nodes.py: Apply Flux ControlNet start 0.0, end 1.0; x-flux's "
                   "denoise_controlnet adds the ControlNet at every step https://github.com/XLabs-AI/x-flux")
XLABS_TYPES = ("canny", "depth", "softedge")     # XLabs trained canny, depth and hed (a soft edge map)


@dataclass
class ControlAdvice:
    """Settings for ControlNetApplyAdvanced and an IP-Adapter, with a reason and source for each.

    It is also an explain() section (``title`` + ``explain(verbosity)``).
    """

    family: str
    control_type: str
    strength: float
    start_percent: float
    end_percent: float
    ip_adapter_weight: float
    decisions: list[Decision] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    title: str = "Control"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("title")
        return data

    def explain(self, verbosity: str) -> str:
        values = (f"{self.control_type} ControlNet at strength {self.strength:g}, "
                  f"{self.start_percent:g}-{self.end_percent:g} of the steps; IP-Adapter weight "
                  f"{self.ip_adapter_weight:g}")
        if verbosity == "minimal":
            return values
        if verbosity == "standard":
            published = [d.field for d in self.decisions if d.source and is_published(d.source)]
            rest = [d.field for d in self.decisions if d.field not in published]
            if not published:
                tail = "No maker publishes these for this family: convention."
            else:
                tail = f"Published by the model makers: {', '.join(published)}" + (
                    f"; convention or your choice: {', '.join(rest)}." if rest else ".")
            return f"{values[0].upper()}{values[1:]}. {tail}"
        lines = [f"- {d.field} = {d.value}: {d.reason}"
                 + (f" [source: {d.source}]" if verbosity == "technical" and d.source else "")
                 for d in self.decisions]
        lines += [f"- note: {note}" for note in self.notes]
        return "\n".join(lines)


def advise_control(analysis: Any = None, family: str = "sdxl", control_type: str = "auto",
                   controlnet_name: str = "", image_prompt_only: bool | None = None,
                   xlabs: bool = False) -> ControlAdvice:
    """ControlAdvice for ``analysis`` (a PromptAnalysis, or None) on ``family``.

    ``control_type``: one of CONTROL_TYPES, or "auto" to choose from the analysis.
    ``controlnet_name``: the ControlNet file's name, when known: a model whose own card
    publishes another figure (MODEL_CARDS) gets that figure.
    ``xlabs``: the ControlNet is one of XLabs-AI's FLUX ControlNets (told by its keys): XLabs' figures.
    ``image_prompt_only``: whether the IP-Adapter image is the only prompt (weight 1.0); None
    decides from the analysis (no text -> image only). Raises ParamsError naming the bad input.
    """
    profile = get_family(family)
    kind = str(control_type).strip().lower()
    if kind != "auto" and kind not in CONTROL_TYPES:
        raise ParamsError(f"control_type: unknown control type {control_type!r}; choose auto or one of "
                          f"{', '.join(CONTROL_TYPES)}")
    decisions: list[Decision] = []
    notes: list[str] = []
    if kind == "auto":
        kind, why = _type_for(analysis, profile.group)
        decisions.append(Decision("control_type", kind, f"{why}; chose {kind}",
                                  "convention: Kubik's pick of a control type for the prompt"))
    else:
        decisions.append(Decision("control_type", kind, f"your choice: {kind}", "your input"))

    table = SETTINGS.get(profile.group)
    if table is None:
        setting = ControlSetting(1.0, 1.0, _OTHER_FAMILY, _OTHER_FAMILY)
        notes.append(f"{profile.label}: no ControlNet settings are published for this family in "
                     "Kubik's table; ComfyUI's defaults are used")
    else:
        setting = table.get(kind)
        if setting is None:
            stand_in = next((k for k in _NEAREST.get(kind, ()) if k in table), next(iter(table)))
            notes.append(f"{profile.label}: no maker's {kind} ControlNet is in Kubik's table; "
                         f"using the {stand_in} settings")
            setting = table[stand_in]

    strength, end, strength_source, end_source = (setting.strength, setting.end,
                                                  setting.strength_source, setting.schedule_source)
    card = _model_card(controlnet_name, profile.group, kind)
    start_source = _UNION2_START if profile.group == "flux" else setting.schedule_source
    if xlabs and profile.group == "flux":
        strength, end, strength_source, end_source = 0.7, 1.0, _XLABS_STRENGTH, _XLABS_SCHEDULE
        start_source = _XLABS_SCHEDULE
        notes.append(f"{controlnet_name or 'the ControlNet'}: an XLabs-AI FLUX ControlNet; XLabs' workflows "
                     "sample it 25 steps at FLUX guidance 3.5")
        if kind not in XLABS_TYPES:
            notes.append(f"XLabs-AI trained canny, depth and hed (soft edge) ControlNets, none for {kind}: give "
                         "the control picture its ControlNet was trained on")
    elif card is not None:
        strength, strength_source = card.strength, card.source
        end, end_source = ((card.end, card.source) if card.end is not None else
                           (1.0, "diffusers control_guidance_end default 1.0 (the card's demo sets none)"))
        notes.append(f"{controlnet_name}: its own card's figures are used")
    elif profile.group == "flux" and _is_union_v1(controlnet_name):
        strength = min(max(strength, 0.3), 0.8)
        notes.append(f"{controlnet_name}: Union-Pro v1, whose card recommends strength 0.3-0.8")
        strength_source = _UNION_V1

    head = "published" if is_published(strength_source) else "convention"
    decisions.append(Decision("strength", strength, f"{head} for {kind} on {profile.group}: {strength:g}",
                              strength_source))
    decisions.append(Decision("start_percent", setting.start,
                              f"control from the first step: {setting.start:g}", start_source))
    reason = f"{'published' if is_published(end_source) else 'convention'}: {end:g}"
    complexity = getattr(analysis, "complexity", {}).get("overall") if analysis is not None else None
    if complexity is not None and complexity >= DETAILED_PROMPT and end > LATEST_EARLY_END:
        earlier = round(max(LATEST_EARLY_END, end - EARLIER_END), 2)
        reason = (f"{reason}; a detailed prompt (complexity {complexity:.2f}) ends the control "
                  f"{end - earlier:g} earlier so the last steps follow the prompt (convention): {earlier:g}")
        end = earlier
    decisions.append(Decision("end_percent", end, reason, end_source))

    text_given = bool(analysis is not None and str(getattr(analysis, "cleaned", "") or
                                                   getattr(analysis, "prompt", "")).strip())
    image_only = (not text_given) if image_prompt_only is None else bool(image_prompt_only)
    if profile.group == "flux":      # XLabs' adapters: the same 1.0 with or without text
        weight = 1.0
        decisions.append(Decision("ip_adapter_weight", weight,
                                  "published for XLabs' FLUX IP-Adapter, with or without a text prompt: 1",
                                  _XLABS_IPA))
    elif profile.group == "sd3":     # InstantX's SD3.5 Large adapter: the card's 0.5, its only figure
        weight = 0.5
        decisions.append(Decision("ip_adapter_weight", weight,
                                  "published for InstantX's SD3.5 Large IP-Adapter (its card's example, with a "
                                  "text prompt): 0.5", _INSTANTX_SD3_IPA))
    else:
        weight = 1.0 if image_only else 0.5
        decisions.append(Decision(
            "ip_adapter_weight", weight,
            ("published: the reference image is the only prompt: 1" if image_only
             else "published: a text prompt goes with the reference image: 0.5"), _IPA_README))
    if profile.group not in ("sd1", "sdxl", "flux", "sd3"):
        notes.append(f"IP-Adapter weight: the README's figures are for the h94 SD1.5/SDXL adapters; "
                     f"for {profile.label} they are a starting point")
    return ControlAdvice(profile.id, kind, float(strength), float(setting.start), float(end),
                         weight, decisions, notes)


def _type_for(analysis: Any, group: str) -> tuple[str, str]:
    """The control type a prompt suggests, and why (convention)."""
    if analysis is None:
        return "canny", "no prompt analysis: edges keep any composition"
    phrases = " ".join(p for ps in getattr(analysis, "concepts", {}).values() for p in ps).lower()
    content, style = analysis.content_type, analysis.style
    if any(w in phrases for w in ("pose", "full body", "dancing", "jumping", "running", "action")) or \
            content in ("character", "group"):
        return "pose", f"a figure in a pose ({content} prompt): a pose skeleton fixes the body"
    if content in ("landscape", "cityscape", "architecture", "interior", "scene"):
        return "depth", f"a {content} prompt: a depth map keeps the layout of the space"
    if style in ("anime", "illustration", "comic", "sketch"):
        kind = "lineart" if group != "flux" else "softedge"
        return kind, f"a {style} prompt: line art carries the drawing"
    return "canny", f"a {content if content != 'unknown' else 'general'} prompt: edges keep the outlines"


def _model_card(name: str, group: str, kind: str) -> ModelCard | None:
    lowered = name.lower()
    for card in MODEL_CARDS:
        if card.group == group and kind in card.control_types and all(p in lowered for p in card.name_parts):
            return card
    return None


def _is_union_v1(name: str) -> bool:
    lowered = name.lower().replace("_", "-")
    return "union-pro" in lowered and "union-pro-2" not in lowered
