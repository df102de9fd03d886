"""Kubik Parameter Optimizer: KSampler settings for the prompt and the loaded model.
Kubik Control Advice: ControlNet strength/start/end and IP-Adapter weight for the prompt.

Thin wrappers over kubik_core.params: the optimizer reads the MODEL (and, through the hidden
PROMPT, the checkpoint file's name and safetensors metadata) into a ModelInfo, detects the family,
and returns the plan's values typed so they link straight into KSampler and EmptyLatentImage;
the advice node's FLOAT outputs link into core ControlNetApplyAdvanced and an IP-Adapter's weight.
"""
from __future__ import annotations

from . import comfy_bridge as bridge
from ..kubik_core.explain import explain
from ..kubik_core.learning.location import learned_values
from ..kubik_core.learning.model_hashes import hash_cache
from ..kubik_core.params import (ASPECT_CHOICES, DEVICE_CHOICES, FAMILY_IDS, MODES, PRIORITIES,
                                 detect_family, optimize)
from ..kubik_core.params.checkpoint import find_checkpoint, read_safetensors_metadata
from ..kubik_core.params.control import CONTROL_TYPES, advise_control
from ..kubik_core.params.devices import profile_for_gpu
from ..kubik_core.params.errors import CheckpointFileError

# Output types of sampler_name / scheduler: the live KSampler lists, so the outputs link into
# KSampler's combo inputs (ComfyUI compares list-typed sockets by value).
_SAMPLERS = bridge.sampler_names()
_SCHEDULERS = bridge.scheduler_names()


class KubikParameterOptimizer:
    CATEGORY = "KubikAI/params"
    FUNCTION = "optimize"
    DESCRIPTION = ("Chooses steps, CFG, sampler, scheduler and size for the loaded model from the "
                   "model maker's published settings, adjusted to the prompt analysis and your "
                   "priority, and estimates VRAM and time. Every choice is explained by Kubik Explain.")
    RETURN_TYPES = ("KUBIK_SAMPLING_PLAN", "INT", "FLOAT", _SAMPLERS, _SCHEDULERS, "INT", "INT",
                    "FLOAT", "STRING")
    RETURN_NAMES = ("plan", "steps", "cfg", "sampler_name", "scheduler", "width", "height",
                    "guidance", "summary")
    OUTPUT_TOOLTIPS = (
        "The full plan with every decision, its reason and source (for Kubik Explain).",
        "Sampling steps: link to KSampler steps.",
        "CFG scale: link to KSampler cfg (1.0 for distilled and FLUX models).",
        "Sampler: link to KSampler sampler_name.",
        "Scheduler: link to KSampler scheduler.",
        "Image width: link to EmptyLatentImage width.",
        "Image height: link to EmptyLatentImage height.",
        "Distilled guidance for FluxGuidance (FLUX dev / FLUX.2); 0.0 when the family has none.",
        "One line summarising the plan and its VRAM/time estimate.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "family": (["auto", *FAMILY_IDS], {"default": "auto", "tooltip":
                           "Model family. 'auto' detects it from the connected MODEL and its checkpoint "
                           "file (name and metadata); pick one to override detection."}),
                "priority": (list(PRIORITIES), {"default": "balanced", "tooltip":
                             "quality: the maker's sampler at the step count past which comparisons show "
                             "no gain (1-1.6x the balanced count; the plan's notes give the time); balanced: "
                             "the published default; speed: fewest steps and fast samplers; low_vram: "
                             "balanced settings, fp8 weights assumed."}),
                "aspect_ratio": (list(ASPECT_CHOICES), {"default": "auto", "tooltip":
                                 "Width:height. 'auto' frames the picture from the prompt (portraits tall, "
                                 "landscapes wide); the size chosen is always a native bucket of the family "
                                 "in that frame (a size learned from your edits only picks a larger or "
                                 "smaller one; width/height overrides excepted)."}),
                "mode": (list(MODES), {"default": "AUTO", "tooltip":
                         "AUTO: everything chosen, overrides ignored (values learned from three or more "
                         "consistent ASSISTED edits are used, kept inside the family's bounds and "
                         "named in the plan; `kubik insights --reset FAMILY` forgets them). ASSISTED: "
                         "chosen, but any override you set wins (and is recorded for learning). "
                         "MANUAL: your values, family defaults for the rest."}),
                "device": (list(DEVICE_CHOICES), {"default": "auto", "tooltip":
                           "Device profile for the VRAM/time estimate; 'auto' uses the device ComfyUI runs on."}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 200, "tooltip":
                          "Override steps (ASSISTED/MANUAL); 0 = let the optimizer choose."}),
                "cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                        "tooltip": "Override CFG (ASSISTED/MANUAL); 0 = let the optimizer choose."}),
                "sampler_name": (["auto", *_SAMPLERS], {"default": "auto", "tooltip":
                                 "Override the sampler (ASSISTED/MANUAL); 'auto' = let the optimizer choose."}),
                "scheduler": (["auto", *_SCHEDULERS], {"default": "auto", "tooltip":
                              "Override the scheduler (ASSISTED/MANUAL); 'auto' = let the optimizer choose."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8, "tooltip":
                          "Override width in pixels, a multiple of 8 (ASSISTED/MANUAL); 0 = auto."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8, "tooltip":
                           "Override height in pixels, a multiple of 8 (ASSISTED/MANUAL); 0 = auto."}),
                "guidance": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip":
                             "Override FLUX distilled guidance (ASSISTED/MANUAL); 0 = auto."}),
            },
            "optional": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip":
                             "Prompt analysis from Kubik Prompt Analyzer: drives steps, CFG, sampler and framing."}),
                "model": ("MODEL", {"tooltip":
                          "The loaded model; needed when family is 'auto'."}),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    def optimize(self, family, priority, aspect_ratio, mode, device, steps, cfg, sampler_name,
                 scheduler, width, height, guidance, analysis=None, model=None, prompt=None,
                 unique_id=None):
        notes = []
        if model is not None:
            info = bridge.describe_model_for_params(model)
            notes += _read_checkpoint(info, prompt, unique_id)
            detection = detect_family(info, family)
        elif family == "auto":
            raise ValueError("family: 'auto' needs a MODEL: connect your checkpoint loader's MODEL "
                             "to the model input, or pick the family from the list")
        else:
            detection = detect_family(None, family)
        device_id, device_note = _device(device)
        overrides = {"steps": steps or None, "cfg": cfg or None, "sampler_name": sampler_name,
                     "scheduler": scheduler, "width": width or None, "height": height or None,
                     "guidance": guidance or None}
        learned, learned_note = learned_values(bridge.kubik_user_directory(create=False), detection.family,
                                               getattr(analysis, "style", "") or "")
        plan = optimize(analysis, detection.family, priority=priority, aspect_ratio=aspect_ratio,
                        mode=mode, overrides=overrides, device=device_id, detection=detection,
                        sampler_choices=_SAMPLERS, scheduler_choices=_SCHEDULERS, learned=learned)
        plan.notes += notes + ([device_note] if device_note else []) + ([learned_note] if learned_note else [])
        summary = explain(analysis, plan, verbosity="minimal")
        return (plan, plan.steps, plan.cfg, plan.sampler_name, plan.scheduler, plan.width,
                plan.height, plan.guidance if plan.guidance is not None else 0.0, summary)


def _read_checkpoint(info, prompt, unique_id) -> list[str]:
    """Fill info.checkpoint_name/metadata from the graph; notes for what could not be read
    (a damaged or crafted checkpoint header falls back to the file name, with a note)."""
    ref = find_checkpoint(prompt, unique_id)
    if ref is None:
        return []
    info.checkpoint_name = ref.name
    path = bridge.model_file_path(ref.folder, ref.name)
    if path is None:
        return []
    # Kubik Save Image writes its A1111 Model hash: start hashing now, so it is ready by then.
    hash_cache(bridge.kubik_user_directory(create=False)).start(path, "file")
    try:
        info.metadata = read_safetensors_metadata(path, name=ref.name)
    except CheckpointFileError as exc:  # named relative to its model folder, never the server path
        return [f"model: could not read the metadata of checkpoint {exc.file} ({exc.reason}); "
                "the family is detected from its name only"]
    return []


def _device(device: str) -> tuple[str, str | None]:
    """Resolve 'auto' to the device ComfyUI samples on; outside ComfyUI the core decides."""
    if device != "auto":
        return device, None
    current = bridge.torch_device_info()
    if current is None:
        return "auto", None
    name, memory_gb = current
    if name == "cpu":
        return "cpu", None
    profile, note = profile_for_gpu(name, memory_gb)
    return profile.id, note


class KubikControlAdvice:
    CATEGORY = "KubikAI/params"
    FUNCTION = "advise"
    DESCRIPTION = ("Recommends the ControlNet type, strength and start/end percentages and the "
                   "IP-Adapter weight for the prompt and the model family, from the model makers' "
                   "published values (ControlNet 1.1, SDXL cards, FLUX Union-Pro 2.0, IP-Adapter "
                   "README), or a labelled convention where none is published.")
    RETURN_TYPES = ("KUBIK_CONTROL_ADVICE", "FLOAT", "FLOAT", "FLOAT", "FLOAT", "STRING", "STRING")
    RETURN_NAMES = ("advice", "strength", "start_percent", "end_percent", "ip_adapter_weight",
                    "control_type", "summary")
    OUTPUT_TOOLTIPS = (
        "The advice with every value's reason and source.",
        "ControlNet strength: link to ControlNetApplyAdvanced strength.",
        "When the control starts (0-1 of the steps): link to ControlNetApplyAdvanced start_percent.",
        "When the control ends (0-1 of the steps): link to ControlNetApplyAdvanced end_percent.",
        "IP-Adapter weight: link to an IP-Adapter node's weight input.",
        "The control type the advice is for (canny, depth, pose ...): preprocess your control image to match.",
        "The advice and its sources in a few lines (for a text display).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "control_type": (["auto", *CONTROL_TYPES], {"default": "auto", "tooltip":
                                 "The kind of control image you use; 'auto' picks one from the prompt "
                                 "(a posed figure: pose, a place: depth, line art styles: lineart, else canny)."}),
                "family": (["auto", *FAMILY_IDS], {"default": "auto", "tooltip":
                           "Model family; 'auto' takes it from the connected plan (Kubik Parameter Optimizer)."}),
                "ip_adapter_use": (["auto", "with text prompt", "image prompt only"], {"default": "auto",
                                   "tooltip": "How the IP-Adapter image is used: with a text prompt (weight "
                                              "about 0.5) or alone (1.0); 'auto': with text when the analysis has any. "
                                              "FLUX.1 (XLabs' IP-Adapters): 1.0 either way."}),
            },
            "optional": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip":
                             "Prompt analysis from Kubik Prompt Analyzer: picks the type and the schedule."}),
                "plan": ("KUBIK_SAMPLING_PLAN", {"tooltip":
                         "Plan from Kubik Parameter Optimizer: gives the family when family is 'auto'."}),
                "controlnet_name": ("STRING", {"default": "", "tooltip":
                                    "Your ControlNet file's name (optional): a model whose card publishes "
                                    "its own figures (e.g. InstantX FLUX canny) gets them; a file of the "
                                    "controlnet folder in XLabs-AI's FLUX layout gets XLabs' figures."}),
            },
        }

    def advise(self, control_type, family, ip_adapter_use, analysis=None, plan=None, controlnet_name=""):
        if family == "auto":
            if plan is None:
                raise ValueError("family: 'auto' needs a plan: connect Kubik Parameter Optimizer's plan "
                                 "output, or pick the family from the list")
            family = plan.family
        image_only = {"auto": None, "with text prompt": False, "image prompt only": True}[ip_adapter_use]
        advice = advise_control(analysis, family, control_type, controlnet_name or "", image_only,
                                xlabs=_is_xlabs_controlnet(controlnet_name))
        return (advice, advice.strength, advice.start_percent, advice.end_percent,
                advice.ip_adapter_weight, advice.control_type, advice.explain("technical"))


def _is_xlabs_controlnet(name: str) -> bool:
    """Whether ``name`` is a file of ComfyUI's controlnet folder in XLabs-AI's FLUX layout (told by
    its keys, as kubik generate tells it), whose maker publishes its own figures."""
    path = bridge.model_file_path("controlnet", name) if name else None
    if path is None:
        return False
    from ..kubik_core.generate.controlnet import controlnet_kind

    return controlnet_kind(path) == "flux_xlabs"


NODE_CLASS_MAPPINGS = {"KubikParameterOptimizer": KubikParameterOptimizer,
                       "KubikControlAdvice": KubikControlAdvice}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikParameterOptimizer": "Kubik Parameter Optimizer",
                              "KubikControlAdvice": "Kubik Control Advice"}
