"""One ``kubik generate`` run: analyse, pick LoRAs and settings, plan memory, generate, save, record.

    from kubik_core.generate import GenerateRequest, plan_generation, generate
    request = GenerateRequest("a castle at dawn", checkpoint="sdxl.safetensors", out_dir="out")
    prepared = plan_generation(request)     # analysis, plan, LoRAs, memory estimates; nothing loaded
    result = generate(prepared)             # PNGs + learning-store records

The steps are the pack's own: the analyzer (prompting), the optimizer (params: steps, CFG,
sampler, scheduler, size), the recommender (loras), then diffusers instead of ComfyUI's
KSampler. PNGs carry what Kubik Save Image writes (A1111 ``parameters`` with model and LoRA
hashes, ``kubik`` JSON with analysis, plan, LoRAs and explanation), and each image is one
generation in the learning store, so ``kubik insights`` and ``kubik rate`` see it.

Prompt weights ``(word:1.2)`` are applied as ComfyUI applies them (prompt_weights.py). What
differs from ComfyUI, and is said in the run's notes: ``embedding:name`` is not loaded, and the
sampler/scheduler pair is the nearest diffusers scheduler (schedulers.py).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoints import FAMILY_NAMES
from ..common.pictures import read_picture
from . import memory
from .checkpoint import CheckpointInfo, inspect_checkpoint

MAX_IMAGES = 64
FLOW_FAMILIES = ("flux", "sd3")         # flow-matching DiTs: bf16 on a GPU, the pipeline's own scheduler
MAX_SIDE = 4096


class GenerateError(ValueError):
    """Bad input for a generation; the message names the input and the fix."""


@dataclass
class GenerateRequest:
    prompt: str
    checkpoint: str
    out_dir: str = "output"
    family: str = "auto"
    priority: str = "balanced"
    aspect: str = "auto"
    dialect: str = "comfyui"
    loras: str = "auto"
    lora_dirs: list[str] = field(default_factory=list)
    memory: str = "auto"
    seed: int = 0
    count: int = 1
    negative: str | None = None           # None: the analyzer's suggested negative prompt
    overrides: dict[str, Any] = field(default_factory=dict)   # steps, cfg, sampler_name, scheduler, width, height
    tokenizer: str | None = None
    text_encoders: list[str] = field(default_factory=list)   # FLUX: clip_l and t5xxl files
    vae: str | None = None                # FLUX: ae.safetensors, for a file without its VAE
    t5_tokenizer: str | None = None       # FLUX: folder with T5's tokenizer.json
    store: str | None = None              # learning store location (None: the default one)
    record: bool = True
    device: str = "auto"                  # "cpu", "cuda", or auto (cuda when present)
    controlnet: str | None = None         # an SD1.5, SDXL or FLUX.1 ControlNet .safetensors file
    control_image: str | None = None
    control_type: str = "auto"            # params.control.CONTROL_TYPES; auto: from the prompt analysis
    control_strength: float | None = None  # None: the published value (params/control.py)
    mask: str | None = None               # an SD3 inpainting ControlNet's mask (white = repaint, black = keep)
    ip_adapter: str | None = None         # an IP-Adapter .safetensors (ComfyUI's models/ipadapter)
    reference: str | None = None          # the IP-Adapter's reference picture
    ip_adapter_weight: float | None = None  # None: the published value (params/control.py)
    image_encoder: str | None = None      # CLIP vision folder or file (default: image_encoder/ beside the adapter)
    true_cfg: float | None = None         # FLUX with --ip-adapter: true_cfg_scale (None: XLabs' 3.5; 1: off)


@dataclass
class PreparedGeneration:
    """Everything decided before any weight is loaded (shown to the user first)."""

    request: GenerateRequest
    info: CheckpointInfo
    analysis: Any
    plan: Any
    stack: Any                            # loras.LoraStack
    positive: str
    negative: str
    device: Any
    choice: memory.MemoryChoice
    control: Any = None                   # params.control.ControlAdvice with --controlnet
    notes: list[str] = field(default_factory=list)
    ip_adapter: Any = None                # ip_adapter.IPAdapterPlan with --ip-adapter
    flux_controlnet: Any = None           # flux_controlnet.FluxControlNetLayout with a FLUX --controlnet
    control_mode: int | None = None       # a FLUX Union ControlNet's mode for the control type
    sd3_controlnet: Any = None            # sd3_controlnet.SD3ControlNetLayout with an SD3 --controlnet

    def to_dict(self) -> dict:
        return {"family": self.plan.family, "checkpoint_family": self.info.family,
                "positive": self.positive, "negative": self.negative,
                "plan": self.plan.to_dict(), "analysis": self.analysis.to_dict(),
                "loras": [_lora_dict(i) for i in self.stack.items],
                "memory": {"strategy": self.choice.strategy, "reason": self.choice.reason,
                           "device": str(self.device),
                           "estimates": [e.to_dict() for e in self.choice.estimates]},
                "control": self.control.to_dict() if self.control is not None else None,
                "ip_adapter": self.ip_adapter.to_dict() if self.ip_adapter is not None else None,
                "control_mode": self.control_mode,
                "notes": list(self.notes)}


@dataclass
class GenerateResult:
    images: list[str]
    generation_ids: list[str]
    seeds: list[int]
    seconds_per_image: float
    peak_bytes: int
    peak_measured: str
    notes: list[str]


def _lora_dict(item) -> dict:
    """A stack item without its local path (which has no place in a shared image)."""
    return {k: v for k, v in vars(item).items() if k != "path"}


def _device(requested: str):
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise GenerateError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    if requested not in ("cpu", "cuda"):
        raise GenerateError(f"--device: {requested!r} is not cpu, cuda or auto")
    return torch.device(requested)


def _segments(text: str, dialect: str) -> list[tuple[str, float]]:
    """(text, weight) pairs of a prompt in its dialect, as ComfyUI's CLIPTextEncode weighs them."""
    from ..prompting import parse_prompt

    return parse_prompt(text, dialect).segments if text.strip() else []


def _family(request: GenerateRequest, info: CheckpointInfo):
    """The optimizer's family: read from the checkpoint's name and metadata (Pony, Illustrious,
    Lightning ... are SDXL files), kept only when it belongs to the loaded architecture."""
    from ..params import detect_family, get_family
    from ..params.checkpoint import read_safetensors_metadata
    from ..params.plan import ModelInfo

    group = {"sd15": "sd1", "sdxl": "sdxl", "flux": "flux", "sd3": "sd3"}[info.family]
    model = ModelInfo(checkpoint_name=os.path.basename(request.checkpoint),
                      metadata=read_safetensors_metadata(request.checkpoint))
    allowed = getattr(info, "families", ())     # FLUX dev or schnell, SD3.5 large or medium: from the header
    detection = detect_family(model, request.family)
    if get_family(detection.family).group != group:
        if request.family != "auto":
            raise GenerateError(f"--family {request.family}: the checkpoint is {info.family}; give a family of "
                                f"that architecture or auto")
        # "flux" and "sd3" name architectures, not optimizer families: the header's first family
        detection = detect_family(model, allowed[0] if allowed else info.family)
    if allowed and detection.family not in allowed:
        if request.family != "auto":
            raise GenerateError(f"--family {request.family}: the file is {info.described}; give "
                                f"{' or '.join(allowed)} or auto")
        detection = detect_family(model, allowed[0])
    return detection


def plan_generation(request: GenerateRequest) -> PreparedGeneration:
    """Analyse, choose settings, LoRAs and the memory strategy; loads no weights.

    Raises GenerateError (or another ValueError with a clear message) for bad input."""
    from ..loras.stack import LoraStack
    from ..params import ParamsError, optimize
    from ..prompting import analyze_prompt
    from .loras import lora_folders, parse_explicit, recommended

    if not 1 <= request.count <= MAX_IMAGES:
        raise GenerateError(f"-n: {request.count} images; give 1 to {MAX_IMAGES}")
    if not 0 <= request.seed < 2**63:
        raise GenerateError(f"--seed: {request.seed} is not a seed from 0 to 2^63-1")
    for side in ("width", "height"):
        value = request.overrides.get(side)
        if value is not None and (value < 64 or value > MAX_SIDE or value % 8):
            raise GenerateError(f"--{side}: {value}; give a multiple of 8 from 64 to {MAX_SIDE}")
    if request.memory not in memory.MEMORY_CHOICES:
        raise GenerateError(f"--memory: unknown strategy {request.memory!r}; choose one of "
                            f"{', '.join(memory.MEMORY_CHOICES)}")
    if (request.controlnet is None) != (request.control_image is None):
        raise GenerateError("--controlnet and --control-image go together: give both or neither")
    if request.controlnet is not None:
        for flag, path in (("--controlnet", request.controlnet), ("--control-image", request.control_image)):
            if not os.path.isfile(path):
                raise GenerateError(f"{flag}: no file {Path(path).name!r}")
        if request.control_strength is not None and not 0 <= request.control_strength <= 2:
            raise GenerateError(f"--control-strength: {request.control_strength:g}; give 0 to 2")
        _control_image(request.control_image, 8, 8)      # unreadable pictures fail before any loading
    if request.mask is not None:
        from .sd3_controlnet import check_mask_file

        if request.controlnet is None:
            raise GenerateError("--mask goes with an inpainting ControlNet: give --controlnet FILE --control-image "
                                "IMG (the picture to repaint) with it, or drop --mask")
        if not os.path.isfile(request.mask):
            raise GenerateError(f"--mask: no file {Path(request.mask).name!r}")
        check_mask_file(request.mask)
    from .flux_ip_adapter import check_true_cfg
    from .ip_adapter import check_inputs, plan_ip_adapter

    check_inputs(request.ip_adapter, request.reference, request.ip_adapter_weight)
    check_true_cfg(request.true_cfg)
    info = inspect_checkpoint(request.checkpoint, request.text_encoders, request.vae)
    if request.true_cfg is not None and (info.family != "flux" or request.ip_adapter is None):
        raise GenerateError("--true-cfg goes with a FLUX.1 checkpoint and --ip-adapter (XLabs' true CFG); drop it")
    device = _device(request.device)
    notes: list[str] = []
    try:
        analysis = analyze_prompt(request.prompt, dialect=request.dialect, seed=request.seed)
        detection = _family(request, info)
        overrides = {k: v for k, v in request.overrides.items() if v is not None}
        plan = optimize(analysis, detection.family, priority=request.priority, aspect_ratio=request.aspect,
                        mode="ASSISTED" if overrides else "AUTO", overrides=overrides or None,
                        device="auto", detection=detection, calibrate=False)
    except ParamsError as exc:
        raise GenerateError(str(exc)) from None
    folders = lora_folders(request.lora_dirs)
    if request.loras == "none":
        stack = LoraStack()
    elif request.loras == "auto":
        stack = recommended(analysis, plan.family, folders, request.priority)
    else:
        stack = parse_explicit(request.loras, folders)
    positive = analysis.cleaned or request.prompt
    missing = stack.triggers_missing_from(positive)
    if missing:
        positive = f"{positive}, {', '.join(missing)}"
        notes.append(f"added the LoRA trigger words {', '.join(missing)}")
    negative = request.negative if request.negative is not None else analysis.negative or ""
    ip_adapter = None
    if request.ip_adapter is not None:     # headers checked against the checkpoint, the weight advised
        ip_adapter = plan_ip_adapter(request.ip_adapter, request.reference, request.image_encoder,
                                     request.ip_adapter_weight, info.family, request.checkpoint, analysis,
                                     plan.family, info.files.transformer if info.family in FLOW_FAMILIES else None,
                                     request.true_cfg)
    true_cfg = ip_adapter is not None and ip_adapter.true_cfg is not None and ip_adapter.true_cfg > 1
    if info.family == "flux":      # FLUX.1 dev and schnell sample without CFG, but for XLabs' true CFG
        if request.negative and not true_cfg:
            notes.append("FLUX.1 samples without CFG: the negative prompt is not used")
        negative = (request.negative or "") if true_cfg else ""
    if true_cfg:
        notes.append(f"true CFG {ip_adapter.true_cfg:g} for the XLabs IP-Adapter: two passes of the model a step, "
                     f"the second with the negative prompt ({negative or 'empty'}) and a black reference")
        if info.files.variant == "schnell":
            notes.append("XLabs' IP-Adapters were trained on FLUX.1 dev; on schnell they are untested by their makers")
    if info.family in FLOW_FAMILIES and any(weight != 1 for text in (positive, negative)
                                            for _, weight in _segments(text, request.dialect)):
        notes.append(f"prompt weights are not applied to {FAMILY_NAMES[info.family]} here: the words are kept at "
                     "weight 1")
    if info.family == "sd3" and info.files.t5 is None:
        notes.append("no T5-XXL: the prompt is encoded by CLIP-L and CLIP-G alone (weaker prompt following); "
                     "add t5xxl_fp16.safetensors to --text-encoders")
    if "embedding:" in positive + negative:
        notes.append("embedding:name is not loaded outside ComfyUI; the words stay in the prompt as text")
    control = flux_controlnet = control_mode = sd3_controlnet = None
    if request.controlnet is not None:
        from ..params.control import advise_control

        from .controlnet import inspect_controlnet

        control_type = request.control_type
        if info.family == "flux":
            flux_controlnet = _inspect_flux_controlnet(request.controlnet, info)
        elif info.family == "sd3":      # the MMDiT's widths; a Stability file's control_type names the type
            from .sd3_controlnet import control_type_for

            sd3_controlnet = _inspect_sd3_controlnet(request.controlnet, info)
            control_type = control_type_for(sd3_controlnet, control_type)
        else:
            inspect_controlnet(request.controlnet, info.family)   # layout, family and config, from its header
        from .sd3_controlnet import check_mask

        check_mask(sd3_controlnet, request.mask, os.path.basename(request.controlnet))
        try:
            control = advise_control(analysis, plan.family, control_type,
                                     os.path.basename(request.controlnet),
                                     xlabs=getattr(flux_controlnet, "layout", "") == "xlabs")
        except ParamsError as exc:
            raise GenerateError(str(exc)) from None
        if request.control_strength is not None:
            from ..params.plan import Decision

            control.strength = request.control_strength
            control.notes.append(f"strength {request.control_strength:g} from --control-strength")
            control.decisions = [Decision("strength", control.strength, f"your choice: {control.strength:g}",
                                          "your input: --control-strength") if d.field == "strength" else d
                                 for d in control.decisions]
        if flux_controlnet is not None and flux_controlnet.layout != "xlabs":    # XLabs: one type, no modes
            control_mode = _union_mode(flux_controlnet, control)
        if sd3_controlnet is not None and sd3_controlnet.inpainting:   # the inpainting card's values
            from .sd3_controlnet import inpainting_advice

            inpainting_advice(control, sd3_controlnet.name, request.mask, request.control_strength)
        if sd3_controlnet is not None:
            from .sd3_controlnet import picture_note

            notes += [n for n in (picture_note(sd3_controlnet, control.control_type),) if n]
    choice = _memory_choice(request, info, plan, device, ip_adapter, true_cfg)
    return PreparedGeneration(request, info, analysis, plan, stack, positive, negative, device, choice,
                              control, notes, ip_adapter, flux_controlnet, control_mode, sd3_controlnet)


def _inspect_flux_controlnet(path: str, info: CheckpointInfo):
    """The FLUX ControlNet's layout, checked against the FLUX transformer it will steer."""
    from ..checkpoints.flux import transformer_config
    from .controlnet import header_shapes
    from .flux_controlnet import inspect_flux_controlnet

    transformer = info.files.transformer
    return inspect_flux_controlnet(path, header_shapes(path), transformer_config(transformer.shapes, transformer.name))


def _inspect_sd3_controlnet(path: str, info: CheckpointInfo):
    """The SD3 ControlNet's layout, checked against the MMDiT it will steer."""
    from ..checkpoints.sd3 import transformer_config
    from .controlnet import header_shapes
    from .sd3_controlnet import inspect_sd3_controlnet

    transformer = info.files.transformer
    return inspect_sd3_controlnet(path, header_shapes(path), transformer_config(transformer.shapes, transformer.name),
                                  info.described)


def _union_mode(layout, control) -> int | None:
    """A Union file's mode for the advised control type, kept in the advice with its reason and source."""
    from ..params.plan import Decision
    from .flux_controlnet import NO_MODE_SOURCE, UNION_MODES_SOURCE, control_mode

    mode, why = control_mode(layout, control.control_type)
    control.decisions.append(Decision("control_mode", "none" if mode is None else mode, why,
                                      NO_MODE_SOURCE if mode is None else UNION_MODES_SOURCE))
    return mode


def _adapter_bytes(request: GenerateRequest, ip_adapter) -> dict:
    """Float32 parameter bytes of the ControlNet, IP-Adapter and image encoder files of the run
    (from their headers, already checked by the planning), which the estimate adds to the
    checkpoint's components."""
    from ..common.safetensors_file import SafetensorsFileError, read_header

    files = {"controlnet": request.controlnet, "ip_adapter": request.ip_adapter}
    if ip_adapter is not None:
        encoder = Path(ip_adapter.encoder_layout.path)
        files["image_encoder"] = encoder / "model.safetensors" if encoder.is_dir() else encoder
    sizes = {}
    for part, path in files.items():
        if path is None:
            continue
        try:
            tensors = read_header(path).tensors.values()
        except (SafetensorsFileError, OSError):   # e.g. a folder layout this estimate does not read
            continue
        sizes[part] = 4 * sum(math.prod(shape) for _, shape in tensors)
    return sizes


def _step_cost(component_bytes: dict, extras: dict, true_cfg: bool) -> float:
    """How much longer a sampling step takes than the checkpoint's alone: a ControlNet runs beside the
    denoiser every step (its share by parameter count, a rough model), and true CFG runs both twice."""
    denoiser = component_bytes.get("unet") or component_bytes.get("transformer") or 0
    cost = 1.0 + (extras.get("controlnet", 0) / denoiser if denoiser else 0.0)
    return cost * (2.0 if true_cfg else 1.0)


def _memory_choice(request, info, plan, device, ip_adapter=None, true_cfg: bool = False) -> memory.MemoryChoice:
    import torch

    cuda = device.type == "cuda"
    free = torch.cuda.mem_get_info(device)[0] if cuda else None
    scale = 0.5 if cuda else 1.0            # float16 on a GPU (load), float32 on the CPU
    extras = _adapter_bytes(request, ip_adapter)
    weights = {name: int(size * scale) for name, size in {**info.component_bytes, **extras}.items()}
    estimates = memory.estimate_strategies(weights, int(info.largest_tensor_bytes * scale), plan.width, plan.height,
                                           request.count, cuda, plan.estimated_seconds,
                                           _step_cost(info.component_bytes, extras, true_cfg))
    try:
        return memory.choose(request.memory, estimates, cuda, free)
    except memory.MemoryStrategyError as exc:
        raise GenerateError(str(exc)) from None


def load(prepared: PreparedGeneration):
    """The diffusers pipeline with scheduler, LoRAs and memory strategy applied; returns (pipe, notes)."""
    from .checkpoint import load_pipeline
    from .loras import apply_loras
    from .schedulers import diffusers_scheduler, flow_matching_notes

    import torch

    request = prepared.request
    flow = prepared.info.family in FLOW_FAMILIES
    # FLUX and SD3.5 are read straight into bfloat16 for a GPU: never whole in float32 in RAM
    pipe, _info = load_pipeline(request.checkpoint, request.tokenizer, request.text_encoders, request.vae,
                                request.t5_tokenizer,
                                torch.bfloat16 if flow and prepared.device.type == "cuda" else None)
    notes: list[str] = []
    if prepared.flux_controlnet is not None:
        pipe = _with_flux_controlnet(pipe, prepared.request.controlnet, prepared.flux_controlnet,
                                     torch.bfloat16 if prepared.device.type == "cuda" else None)
    elif prepared.sd3_controlnet is not None:
        from .sd3_controlnet import with_sd3_controlnet

        pipe = with_sd3_controlnet(pipe, prepared.request.controlnet, prepared.sd3_controlnet,
                                   torch.bfloat16 if prepared.device.type == "cuda" else None)
    elif prepared.control is not None:
        pipe = _with_controlnet(pipe, prepared.request.controlnet, prepared.info.family)
    if prepared.ip_adapter is not None:
        from .ip_adapter import attach

        attach(pipe, prepared.request.ip_adapter, prepared.ip_adapter, prepared.request.reference)
    if prepared.device.type == "cuda":      # half the memory and the fast kernels; the SDXL VAE
        # upcasts itself where fp16 overflows (force_upcast); FLUX, SD3.5 and T5 overflow in fp16: bf16
        pipe.to(dtype=torch.bfloat16 if flow else torch.float16)
    if flow:
        warnings = flow_matching_notes(prepared.plan.sampler_name, prepared.plan.scheduler)
    else:
        pipe.scheduler, warnings = diffusers_scheduler(pipe.scheduler.config, prepared.plan.sampler_name,
                                                       prepared.plan.scheduler)
    notes += warnings
    apply_loras(pipe, prepared.stack)
    notes += memory.apply_strategy(pipe, prepared.choice.strategy, prepared.device)
    return pipe, notes


def _with_controlnet(pipe, controlnet_path: str, family: str):
    """The SD1.5 or SDXL pipeline's parts with the ControlNet, as diffusers' ControlNet pipeline."""
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline

    from .controlnet import load_controlnet

    controlnet = load_controlnet(controlnet_path, family)
    if family == "sdxl":
        control_pipe = StableDiffusionXLControlNetPipeline(
            vae=pipe.vae, text_encoder=pipe.text_encoder, text_encoder_2=pipe.text_encoder_2,
            tokenizer=pipe.tokenizer, tokenizer_2=pipe.tokenizer_2, unet=pipe.unet, controlnet=controlnet,
            scheduler=pipe.scheduler, add_watermarker=getattr(pipe, "watermark", None) is not None)
    else:
        control_pipe = StableDiffusionControlNetPipeline(
            vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
            controlnet=controlnet, scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    control_pipe.set_progress_bar_config(disable=True)
    return control_pipe


def _with_flux_controlnet(pipe, controlnet_path: str, layout, dtype):
    """The FLUX pipeline's parts with the ControlNet, as diffusers' FluxControlNetPipeline."""
    from diffusers import FluxControlNetPipeline

    from .flux_controlnet import load_flux_controlnet

    control_pipe = FluxControlNetPipeline(
        scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2, transformer=pipe.transformer,
        controlnet=load_flux_controlnet(controlnet_path, layout, dtype))
    control_pipe.set_progress_bar_config(disable=True)
    return control_pipe


def _control_files(request: GenerateRequest) -> dict:
    """The names (never the local paths) of the control picture and mask, for the PNG's metadata."""
    files = {"control_image": request.control_image, "mask": request.mask}
    return {key: os.path.basename(path) for key, path in files.items() if path is not None}


def _control_image(path: str, width: int, height: int):
    """The control picture at the output size (as ComfyUI's ControlNetApply scales its hint)."""
    from PIL import Image

    picture = read_picture(path, "RGB", "--control-image", "give a PNG or JPEG control map", GenerateError)
    return picture.resize((width, height), Image.Resampling.BILINEAR)


def _flux_noise(pipe, plan, seed: int):
    """The starting noise FluxPipeline draws for ``seed``. FluxControlNetPipeline draws from the
    same generator to encode the control picture first, so without this the seed would give other
    noise with a ControlNet than without one (and strength 0 another picture)."""
    import torch

    latents, _ids = pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, plan.height, plan.width,
                                         pipe.text_encoder_2.dtype, pipe._execution_device,
                                         torch.Generator("cpu").manual_seed(seed))
    return latents


def run_pipeline(pipe, prepared: PreparedGeneration, seed: int):
    """One image as a PIL picture, for ``seed``."""
    import torch

    from .prompt_weights import weighted_prompt_kwargs

    plan = prepared.plan
    # ComfyUI CLIPSetLastLayer -2 = A1111 "Clip skip 2" = diffusers clip_skip 1
    clip_skip = abs(int(plan.clip_skip)) - 1 if plan.clip_skip else None
    dialect = prepared.request.dialect
    common = dict(num_inference_steps=plan.steps, width=plan.width, height=plan.height,
                  generator=torch.Generator("cpu").manual_seed(seed))
    if prepared.info.family == "flux":      # dev: distilled guidance (FluxGuidance); schnell: none
        from ..checkpoints.flux import MAX_T5_TOKENS

        kwargs = dict(common, prompt="".join(text for text, _ in _segments(prepared.positive, dialect)),
                      guidance_scale=plan.guidance or 0.0,
                      max_sequence_length=MAX_T5_TOKENS[prepared.info.files.variant])
    elif prepared.info.family == "sd3":     # CFG with the negative prompt; T5's 256 tokens (diffusers' default)
        kwargs = dict(common, prompt="".join(text for text, _ in _segments(prepared.positive, dialect)),
                      negative_prompt="".join(text for text, _ in _segments(prepared.negative, dialect)),
                      guidance_scale=plan.cfg)
    else:
        kwargs = dict(common, **weighted_prompt_kwargs(pipe, _segments(prepared.positive, dialect),
                                                       _segments(prepared.negative, dialect), clip_skip),
                      guidance_scale=plan.cfg)
    if prepared.control is not None:
        hint = _control_image(prepared.request.control_image, plan.width, plan.height)
        if prepared.flux_controlnet is not None:
            kwargs.update(control_image=hint, control_mode=prepared.control_mode,
                          latents=_flux_noise(pipe, plan, seed))
        elif prepared.sd3_controlnet is not None:   # as each maker's code gives it (sd3_controlnet.py)
            from .sd3_controlnet import control_picture

            kwargs["control_image"] = control_picture(hint, prepared.sd3_controlnet, prepared.control.control_type)
            if prepared.sd3_controlnet.inpainting:   # the mask at the control picture's size
                from .sd3_controlnet import mask_picture

                kwargs["control_mask"] = mask_picture(prepared.request.mask, plan.width, plan.height)
        else:
            kwargs["image"] = hint
        kwargs.update(controlnet_conditioning_scale=prepared.control.strength,
                      control_guidance_start=prepared.control.start_percent,
                      control_guidance_end=prepared.control.end_percent)
    if prepared.ip_adapter is not None:
        from .ip_adapter import reference_image

        if prepared.ip_adapter.instantx_flux_layout is None:   # InstantX's FLUX tokens are set at loading
            kwargs["ip_adapter_image"] = reference_image(prepared.request.reference)
        if prepared.ip_adapter.true_cfg is not None:     # FLUX: XLabs' true CFG (1: off), black negative reference
            kwargs.update(true_cfg_scale=prepared.ip_adapter.true_cfg,
                          negative_prompt="".join(text for text, _ in _segments(prepared.negative, dialect)))
    if prepared.sd3_controlnet is not None:   # the pipeline samples the control latent from torch's global RNG
        from .sd3_controlnet import seeded

        with torch.inference_mode(), seeded(seed, prepared.device):
            return pipe(**kwargs).images[0]
    with torch.inference_mode():
        return pipe(**kwargs).images[0]


def generate(prepared: PreparedGeneration, progress=None) -> GenerateResult:
    """Load, generate ``count`` images (seeds seed, seed+1, ...), save and record them."""
    from ..learning.model_hashes import hash_cache

    request = prepared.request
    hashes = hash_cache()
    hashes.start(request.checkpoint, "file")   # the A1111 Model hash, while the model loads
    pipe, notes = load(prepared)
    memory.measure_start(prepared.device)
    images, seeds = [], []
    started = time.perf_counter()
    for number in range(request.count):
        seed = request.seed + number
        images.append(run_pipeline(pipe, prepared, seed))
        seeds.append(seed)
        if progress is not None:
            progress(number + 1, request.count)
    seconds = (time.perf_counter() - started) / request.count
    peak, measured = memory.measured_peak(prepared.device)
    hashes.wait()
    paths, ids = save_and_record(prepared, images, seeds, hashes)
    return GenerateResult(paths, ids, seeds, seconds, peak, measured, notes)


def save_and_record(prepared: PreparedGeneration, images, seeds, hashes) -> tuple[list[str], list[str]]:
    """PNGs with Kubik Save Image's metadata, then one learning-store generation per image (after
    the images are on disk: a store problem never loses a picture)."""
    from PIL.PngImagePlugin import PngInfo

    from .. import __version__
    from ..common.atomic import atomic_path
    from ..explain import explain
    from ..learning import GenerationRecord, LearningError, LearningStore, ParameterEdits
    from ..learning.model_hashes import add_resource_hashes
    from ..learning.pnginfo import a1111_parameters, png_text_chunks

    request, plan, analysis = prepared.request, prepared.plan, prepared.analysis
    paths_by_name = {item.name: item.path for item in prepared.stack.items}
    loras = [_lora_dict(item) for item in prepared.stack.items]
    model_hash = add_resource_hashes(loras, request.checkpoint, paths_by_name.get, hashes)
    sections = [prepared.stack] if len(prepared.stack) else []
    sections += [prepared.control] if prepared.control is not None else []
    sections += [prepared.ip_adapter] if prepared.ip_adapter is not None else []
    adapters = {"control": prepared.control.to_dict() if prepared.control is not None else None,
                "ip_adapter": prepared.ip_adapter.to_dict() if prepared.ip_adapter is not None else None}
    explanation = explain(analysis, plan, "standard", sections=sections)
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = [int(p.stem.split("_")[-2]) for p in out.glob("kubik_*_.png") if p.stem.split("_")[-2].isdigit()]
    counter = max(existing, default=0) + 1
    paths = []
    for image, seed in zip(images, seeds):
        parameters = a1111_parameters(prepared.positive, prepared.negative, plan, seed,
                                      os.path.basename(request.checkpoint), loras,
                                      version=f"KubikAI {__version__}", model_hash=model_hash)
        kubik = {"version": __version__, "analysis": analysis.to_dict(), "plan": plan.to_dict(),
                 "loras": loras, "explanation": explanation,
                 **adapters,
                 "generate": {"memory": prepared.choice.strategy, "device": str(prepared.device),
                              "checkpoint_family": prepared.info.family, **_control_files(request)}}
        info = PngInfo()
        for key, text in png_text_chunks(None, None, parameters, kubik):
            info.add_text(key, text)
        path = out / f"kubik_{counter:05}_.png"
        counter += 1
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=info, compress_level=4)
        paths.append(str(path))
    ids: list[str] = []
    if request.record:
        rows = [{k: item.get(k) for k in ("name", "sha256", "strength_model", "strength_clip", "suggested")}
                for item in loras]
        records = [GenerationRecord(
            prompt=prepared.positive, negative=prepared.negative, family=plan.family, style=analysis.style,
            content_type=analysis.content_type, model=os.path.basename(request.checkpoint), seed=seed,
            preset=plan.priority, image_path=os.path.abspath(path), analysis=analysis.to_dict(),
            params={**plan.to_dict(), **{k: v for k, v in adapters.items() if v is not None}}, loras=rows)
            for path, seed in zip(paths, seeds)]
        # --steps, --cfg ... that replaced the optimizer's values are edits it learns from, as
        # Kubik Save Image records them
        edits = ParameterEdits(plan.family, analysis.style, plan.suggested, plan.overrides) if plan.overrides else None
        try:
            ids = LearningStore(request.store).record_generations(records, edits)
        except LearningError as exc:
            raise GenerateError(f"the images were saved ({', '.join(Path(p).name for p in paths)}) but not "
                                f"recorded: {exc}; pass --no-record to skip the learning store") from None
    return paths, ids
