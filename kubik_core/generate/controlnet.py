"""A ControlNet single file as diffusers' ControlNetModel, offline, for SD1.5 and SDXL checkpoints.

ComfyUI users keep ControlNets as single files in models/controlnet, in one of two key layouts,
told apart by the header's names:

- lllyasviel's original layout (``input_hint_block``, ``input_blocks``, ``zero_convs``,
  ``middle_block_out``, under ``control_model.`` or no prefix): the ControlNet 1.1 SD1.5 files and
  the SDXL ControlNets trained with the original code. The keys are converted with diffusers' own
  single-file converter (``convert_controlnet_checkpoint``), plus SDXL's size embedding
  (``label_emb`` -> ``add_embedding``), which that converter leaves out.
- diffusers' layout saved as one file (``controlnet_cond_embedding``, ``down_blocks``,
  ``controlnet_down_blocks``): diffusers/controlnet-*-sdxl-1.0, xinsir's and most SDXL
  ControlNets, whose ``diffusion_pytorch_model.safetensors`` users rename.

diffusers' ``from_single_file`` would download the model's config; here it is read from the
file's shapes instead: SD1.5 original-layout files with the checkpoint's own reader
(``checkpoints.sd15.unet_config``), everything else from the diffusers-named shapes (for an
original SDXL file, its names converted first). The family is told by the text feature width
(768 SD1.5, 2048 SDXL) and must be the checkpoint's; FLUX.1 ControlNets in diffusers' and XLabs'
layouts (flux_controlnet.py loads them) and SD3/SD3.5 ControlNets (sd3_controlnet.py) are told apart by their keys, each with its own refusal. The model is built on the meta device and
compared with the file's tensors before anything is allocated, so every problem is one line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import FAMILY_NAMES, CheckpointError
from ..checkpoints.layout import count_indexed
from ..checkpoints.modules import load_strict
from ..checkpoints.sd15 import unet_config as sd15_unet_config
from ..common.safetensors_file import SafetensorsFileError, load_tensors, read_header

PREFIX = "control_model."
DIFFUSERS_HINT = "controlnet_cond_embedding.conv_in.weight"
WIDTH_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
HEAD_WIDTH = 64            # SDXL's attention heads are 64 channels wide
SD15_HEADS = 8
# SDXL's size embedding, which diffusers' ControlNet converter does not map.
SIZE_EMBEDDING = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}

# Marks of the ControlNets of other families, told apart so that each gets its own refusal.
FLUX_MARK = "controlnet_x_embedder.weight"
XLABS_MARK = "double_blocks.0.img_attn.qkv.weight"
MISTOLINE_MARK = "controlnet_blocks.0.linear.weight"      # TheMistoAI's MistoLine: BFL-named like XLabs'
SD3_MARK = "pos_embed_input.proj.weight"
SUPPORTED_FLUX = ("a FLUX.1 ControlNet in diffusers' layout (InstantX Canny or Union, Shakker-Labs Union-Pro or "
                  "Union-Pro 2.0) or XLabs-AI's (flux-canny/depth/hed-controlnet)")


class ControlNetError(ValueError):
    """A ControlNet file kubik generate cannot use; the message names it and the fix."""


@dataclass(frozen=True)
class ControlNetLayout:
    """What the header says: the family, the key layout and the diffusers config."""

    name: str
    family: str                 # "sd15" or "sdxl"
    layout: str                 # "original" or "diffusers"
    prefix: str                 # the original layout's key prefix ("control_model." or "")
    config: dict


def header_shapes(path: str | os.PathLike) -> dict:
    name = Path(path).name
    if not os.path.isfile(path):
        raise ControlNetError(f"--controlnet: no file {name!r}")
    try:
        header = read_header(path, name)
    except SafetensorsFileError as exc:
        raise ControlNetError(f"--controlnet: {exc}; give a .safetensors ControlNet") from None
    return {key: tuple(shape) for key, (_, shape) in header.tensors.items()}


def _family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def file_kind(shapes: dict) -> str | None:
    """"flux" (diffusers' FLUX layout), "flux_xlabs", "flux_mistoline", "sd3", or None for none of these."""
    if FLUX_MARK in shapes:
        return "flux"
    if XLABS_MARK in shapes and any(key.startswith("controlnet_blocks.") for key in shapes):
        return "flux_mistoline" if MISTOLINE_MARK in shapes else "flux_xlabs"
    if SD3_MARK in shapes:
        return "sd3"
    return None


def controlnet_kind(path: str | os.PathLike) -> str | None:
    """file_kind of the ControlNet file ``path`` from its header alone; None also for a file that
    is no readable safetensors (the caller only advises, it loads nothing)."""
    try:
        return file_kind(header_shapes(path))
    except ControlNetError:
        return None


def refusal(name: str, kind: str, checkpoint: str) -> str:
    """The one line for a FLUX or SD3 ControlNet file (``kind`` from file_kind) that the
    ``checkpoint`` (its family's name) or this loader cannot take."""
    what = {"flux": "a FLUX.1 ControlNet", "flux_xlabs": "an XLabs-layout FLUX ControlNet (double_blocks.*)",
            "flux_mistoline": "TheMistoAI's MistoLine FLUX ControlNet",
            "sd3": "an SD3 ControlNet"}[kind]
    if checkpoint != "FLUX.1":
        return f"--controlnet: {name} is {what} but the checkpoint is {checkpoint}; give an {checkpoint} ControlNet"
    if kind == "sd3":       # sd3_controlnet.py loads it, for an SD3/SD3.5 checkpoint
        return f"--controlnet: {name} is {what} but the checkpoint is FLUX.1; give {SUPPORTED_FLUX}"
    return f"--controlnet: {name} is {what}, which kubik generate does not load; give {SUPPORTED_FLUX}"


def unmarked(name: str, shapes: dict, checkpoint: str, lacks: str, supported: str) -> str:
    """The one line for a file with none of the FLUX/SD3 ControlNets' marks given with a FLUX or SD3
    ``checkpoint``: an SD1.5/SDXL ControlNet, or no ControlNet at all (``lacks``: what it is not)."""
    family = sd_family(shapes)[0] or sd_family(shapes, PREFIX)[0]
    if family is not None:
        return f"--controlnet: {name} is an {_family_name(family)} ControlNet but the checkpoint is {checkpoint}; " \
               f"give {supported}"
    return f"--controlnet: {name} is not {lacks}; give {supported}"


def inspect_controlnet(path: str | os.PathLike, checkpoint_family: str) -> ControlNetLayout:
    """The layout and config of the ControlNet file ``path``, from its header alone; it must
    belong to ``checkpoint_family`` ("sd15" or "sdxl"). Raises ControlNetError (one line)."""
    name = Path(path).name
    if checkpoint_family not in ("sd15", "sdxl"):
        raise ControlNetError(f"--controlnet: ControlNets load here for SD1.5 and SDXL checkpoints; the "
                              f"checkpoint is {_family_name(checkpoint_family)}")
    shapes = header_shapes(path)
    other = file_kind(shapes)
    if other is not None:       # a FLUX or SD3 ControlNet
        raise ControlNetError(refusal(name, other, _family_name(checkpoint_family)))
    if DIFFUSERS_HINT in shapes:
        layout, prefix = "diffusers", ""
    else:
        prefix = next((p for p in (PREFIX, "") if f"{p}input_hint_block.0.weight" in shapes), None)
        if prefix is None:
            raise ControlNetError(f"--controlnet: {name} is not a ControlNet (no input_hint_block.* or "
                                  "controlnet_cond_embedding.* tensors); give a ControlNet .safetensors from "
                                  "ComfyUI's models/controlnet")
        layout = "original"
    family, width = sd_family(shapes, prefix)
    if width is None:
        raise ControlNetError(f"--controlnet: {name} has no cross-attention (attn2.to_k.weight); not a ControlNet "
                              "for SD1.5 or SDXL")
    if family != checkpoint_family:
        found = f"an {_family_name(family)} ControlNet" if family else f"a ControlNet for {width}-wide text features"
        want = _family_name(checkpoint_family)
        raise ControlNetError(f"--controlnet: {name} is {found} but the checkpoint is {want}; give an {want} "
                              "ControlNet")
    try:
        if layout == "original" and family == "sd15":
            config = sd15_unet_config(shapes, prefix)
        else:
            names = shapes if layout == "diffusers" else _converted_names(shapes, prefix)
            config = diffusers_config(names)
    except (CheckpointError, KeyError, StopIteration, ValueError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) else exc
        raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown ControlNet layout "
                              f"({str(detail)[:160]})") from None
    return ControlNetLayout(name, family, layout, prefix, config)


def sd_family(shapes: dict, prefix: str = "") -> tuple[str | None, int | None]:
    """The family ("sd15", "sd2", "sdxl" or None) of an SD ControlNet's header and its text feature
    width (None: no cross-attention, not an SD ControlNet)."""
    attention = next((k for k in shapes if k.startswith(prefix) and k.endswith("attn2.to_k.weight")), None)
    if attention is None or len(shapes[attention]) != 2:
        return None, None
    width = shapes[attention][1]
    return WIDTH_FAMILY.get(width), width


def _original_layers_per_block(shapes: dict, prefix: str) -> int:
    """Res blocks per level of an original-layout file: input blocks before the first downsampler."""
    block = 1
    while f"{prefix}input_blocks.{block}.0.in_layers.0.weight" in shapes:
        block += 1
    return block - 1


def _converted(state: dict, prefix: str, layers_per_block: int) -> dict:
    """Original-layout tensors (or shapes) under diffusers' names."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    plain = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    converted = convert_controlnet_checkpoint(plain, {"layers_per_block": layers_per_block})
    for new, old in SIZE_EMBEDDING.items():
        for part in ("weight", "bias"):
            if f"{old}.{part}" in plain:
                converted[f"{new}.{part}"] = plain[f"{old}.{part}"]
    return {k: v for k, v in converted.items() if v is not None}


def _converted_names(shapes: dict, prefix: str) -> dict:
    """The diffusers names (and shapes) of an original-layout file's tensors: the converter only
    renames, so it runs on the shapes as well as on the tensors."""
    return _converted(shapes, prefix, _original_layers_per_block(shapes, prefix))


def diffusers_config(shapes: dict) -> dict:
    """diffusers ControlNetModel config from diffusers-named shapes (SD1.5 or SDXL)."""
    levels = count_indexed(shapes, r"down_blocks\.(\d+)\.")
    channels = [shapes[f"down_blocks.{i}.resnets.0.conv2.weight"][0] for i in range(levels)]
    depths = [count_indexed(shapes, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.")
              for i in range(levels)]
    if not levels:
        raise KeyError("down_blocks.0.resnets.0.conv2.weight")
    attention = next(k for k in shapes if k.endswith("attn2.to_k.weight"))
    proj_in = next((k for k in shapes if k.endswith(".proj_in.weight")), None)
    embedding = [shapes["controlnet_cond_embedding.conv_in.weight"][0]]
    embedding += [shapes[f"controlnet_cond_embedding.blocks.{2 * i + 1}.weight"][0]
                  for i in range(count_indexed(shapes, r"controlnet_cond_embedding\.blocks\.(\d+)\.") // 2)]
    sdxl = "add_embedding.linear_1.weight" in shapes
    config = dict(
        in_channels=shapes["conv_in.weight"][1],
        conditioning_channels=shapes["controlnet_cond_embedding.conv_in.weight"][1],
        conditioning_embedding_out_channels=tuple(embedding),
        block_out_channels=tuple(channels),
        layers_per_block=count_indexed(shapes, r"down_blocks\.0\.resnets\.(\d+)\."),
        down_block_types=tuple("CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths),
        cross_attention_dim=shapes[attention][1],
        use_linear_projection=proj_in is not None and len(shapes[proj_in]) == 2,
        mid_block_type=("UNetMidBlock2DCrossAttn" if "mid_block.attentions.0.proj_in.weight" in shapes
                        else "UNetMidBlock2D"),
        transformer_layers_per_block=tuple(max(d, 1) for d in depths),
        attention_head_dim=tuple(c // HEAD_WIDTH for c in channels) if sdxl else SD15_HEADS)
    if sdxl:
        config.update(addition_embed_type="text_time", addition_time_embed_dim=256,
                      projection_class_embeddings_input_dim=shapes["add_embedding.linear_1.weight"][1])
    return config


def _check_built(layout: ControlNetLayout, shapes: dict) -> None:
    """The config's model has exactly the file's tensors (built on the meta device)."""
    import torch
    from diffusers import ControlNetModel

    from ..common.weights import WeightsFileError, check_matches

    with torch.device("meta"):
        probe = ControlNetModel(**layout.config)
    try:
        check_matches(probe, shapes, layout.name)
    except WeightsFileError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None


def load_controlnet(path: str | os.PathLike, checkpoint_family: str = "sd15"):
    """diffusers ControlNetModel (float32) for the ControlNet file ``path``."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    layout = inspect_controlnet(path, checkpoint_family)
    if not (layout.layout == "original" and layout.family == "sd15"):
        shapes = header_shapes(path)
        names = shapes if layout.layout == "diffusers" else _converted_names(shapes, layout.prefix)
        _check_built(layout, names)
    controlnet = ControlNetModel(**layout.config)
    try:
        state = {k: v.float() for k, v in load_tensors(path, layout.name).items()}
    except SafetensorsFileError as exc:
        raise ControlNetError(f"--controlnet: {layout.name}: its tensors cannot be read ({exc.reason})") from None
    if layout.layout == "original" and layout.family == "sd15":
        state = convert_controlnet_checkpoint(state, dict(controlnet.config))
    elif layout.layout == "original":
        state = _converted(state, layout.prefix, controlnet.config.layers_per_block)
    try:
        return load_strict(controlnet, state, "ControlNet", layout.name, _family_name(layout.family))
    except CheckpointError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None
