"""FLUX.1 [dev] and [schnell] from the files ComfyUI users have, as a diffusers FluxPipeline, offline.

A FLUX.1 model usually comes as separate files, as ComfyUI's model folders hold them:

- the diffusion model (models/diffusion_models or models/unet): Black Forest Labs' key layout
  (``double_blocks.*``, ``single_blocks.*``, ``img_in``, ``txt_in``, ``vector_in`` ...), its keys
  bare or under ``model.diffusion_model.``; ``guidance_in.*`` present = dev (guidance-distilled),
  absent = schnell (timestep-distilled, 1-4 steps);
- the text encoders (models/text_encoders): CLIP-L (``clip_l.safetensors``: ``text_model.*``) and
  T5-XXL (``t5xxl_fp16.safetensors``: ``shared`` + ``encoder.block.*``), given with
  ``--text-encoders`` in either order;
- the VAE (models/vae): BFL's ``ae.safetensors`` (``encoder.*``, ``decoder.*``, 16 latent
  channels), given with ``--vae``.

An all-in-one checkpoint (ComfyUI's CheckpointSave of a FLUX model, e.g. Comfy-Org's
flux1-dev-fp8) holds all of them, under ``model.diffusion_model.``, ``text_encoders.clip_l.
transformer.``, ``text_encoders.t5xxl.transformer.`` and ``vae.``; parts given on the command line
replace the file's own.

Every config is read off the headers' shapes (depth, widths, heads, guidance embedding), the
transformer's and the VAE's tensors are converted with diffusers' own single-file converters,
and the tokenizers are ComfyUI's (CLIP's comfy/sd1_tokenizer, T5's comfy/text_encoders/
t5_tokenizer): nothing downloads. Every file is checked against the others from the headers
before a tensor is read, so a wrong combination is one clear line, not a shape error halfway.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .layout import UNET, CheckpointError, count_indexed, read_shapes
from .modules import load_strict, quiet_libraries
from .parts import (CLIP_MARK, T5_MARK, MultiFileInfo, Part, clip_width, is_quantised, load_clip, load_t5,
                    load_vae16, part, read_part, shape_of, sort_text_encoders, t5_tokenizer, t5_width, vae16_config,
                    vae_part)
from .tokenizer import clip_tokenizer, find_tokenizer

# Where ComfyUI's CheckpointSave puts a FLUX model's other parts (supported_models.Flux).
CHECKPOINT_CLIP_L = "text_encoders.clip_l.transformer."
CHECKPOINT_T5 = "text_encoders.t5xxl.transformer."
CHECKPOINT_VAE = "vae."
FLUX1_WIDTH = 3072            # the width diffusers' converter assumes (see _convert_transformer)
FLUX1_IN_CHANNELS = 64        # 16 latent channels in 2x2 patches; Fill (384) / Depth, Canny (128) differ
# FLUX's VAE latent normalisation (ComfyUI latent_formats.Flux; diffusers' FLUX.1 vae config).
VAE_SCALING, VAE_SHIFT = 0.3611, 0.1159
# diffusers' FluxPipeline scheduler configs (black-forest-labs/FLUX.1-dev and -schnell,
# scheduler/scheduler_config.json): dev shifts the schedule with the image size, schnell does not.
DEV_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                     max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
SCHNELL_SCHEDULER = dict(DEV_SCHEDULER, shift=1.0, use_dynamic_shifting=False)
# T5 tokens the pipeline encodes: diffusers' FluxPipeline default (512); schnell was trained on 256.
MAX_T5_TOKENS = {"dev": 512, "schnell": 256}
TEXT_ENCODER_FILES = "--text-encoders clip_l.safetensors t5xxl_fp16.safetensors (ComfyUI's models/text_encoders)"


@dataclass
class FluxFiles:
    """The four parts of a FLUX.1 model, found and checked against each other from the headers."""

    variant: str                      # "dev" or "schnell"
    transformer: Part
    clip_l: Part
    t5: Part
    vae: Part

    @property
    def family(self) -> str:          # the optimizer's family id (params/families.py)
        return f"flux_{self.variant}"

    def component_bytes(self) -> dict:
        return {"transformer": self.transformer.nbytes, "text_encoder": self.clip_l.nbytes,
                "text_encoder_2": self.t5.nbytes, "vae": self.vae.nbytes}

    def largest_tensor_bytes(self) -> int:
        return max(part.largest for part in (self.transformer, self.clip_l, self.t5, self.vae))


def inspect_flux(checkpoint: str | os.PathLike, text_encoders: list | tuple = (),
                 vae: str | None = None) -> MultiFileInfo:
    """The FLUX model's parts and their sizes from the headers (no tensor is read); see
    resolve_flux_files for the errors."""
    files = resolve_flux_files(checkpoint, text_encoders, vae)
    described = f"FLUX.1 {files.variant} (guidance embedding {'present' if files.variant == 'dev' else 'absent'})"
    return MultiFileInfo(os.fspath(checkpoint), "flux", files.component_bytes(), "kl", "flow",
                         files.largest_tensor_bytes(), files, (files.family,), described)


def transformer_prefix(shapes: dict) -> str | None:
    """"" or "model.diffusion_model." where the FLUX double blocks are; None for no FLUX model."""
    for prefix in ("", UNET):
        if f"{prefix}double_blocks.0.img_attn.qkv.weight" in shapes:
            return prefix
    return None


def transformer_config(shapes: dict, name: str) -> dict:
    """diffusers' FluxTransformer2DModel config from a FLUX.1 transformer's shapes (keys without
    prefix); refuses FLUX relatives that this pipeline cannot run, naming them."""
    try:
        return _transformer_config(shapes, name)
    except KeyError as exc:
        raise CheckpointError(f"{name}: its FLUX transformer does not have FLUX.1's layout (no {exc.args[0]} "
                              "of the expected shape)") from None


def _transformer_config(shapes: dict, name: str) -> dict:
    if "double_stream_modulation_img.lin.weight" in shapes:
        raise CheckpointError(f"{name} holds a FLUX.2 model; kubik generate loads FLUX.1 dev and schnell")
    if any(key.startswith("distilled_guidance_layer.") for key in shapes):
        raise CheckpointError(f"{name} holds a Chroma model (FLUX without CLIP conditioning); kubik generate "
                              "loads FLUX.1 dev and schnell")
    if is_quantised(shapes):
        raise CheckpointError(f"{name} holds quantised weights (scaled fp8 or NF4); give the fp16/bf16 or "
                              "plain fp8 (e4m3fn) file")
    width, in_channels = shape_of(shapes, "img_in.weight", 2)
    if in_channels != FLUX1_IN_CHANNELS:
        raise CheckpointError(f"{name} takes {in_channels} input channels (FLUX.1 Fill, Depth or Canny); kubik "
                              f"generate loads the text-to-image FLUX.1 dev and schnell ({FLUX1_IN_CHANNELS})")
    head_dim = shape_of(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", 1)[0]
    single_blocks = count_indexed(shapes, r"single_blocks\.(\d+)\.")
    if width % head_dim or shape_of(shapes, "double_blocks.0.img_mlp.0.weight", 2)[0] != 4 * width \
            or not single_blocks:
        raise CheckpointError(f"{name}: its blocks do not have FLUX.1's proportions (heads dividing "
                              f"the width {width}, MLP 4x wide, single blocks after the double ones)")
    axes = rotary_axes(head_dim, name)
    return {"patch_size": 1, "in_channels": in_channels, "out_channels": None,
            "num_layers": count_indexed(shapes, r"double_blocks\.(\d+)\."),
            "num_single_layers": single_blocks,
            "attention_head_dim": head_dim, "num_attention_heads": width // head_dim,
            "joint_attention_dim": shape_of(shapes, "txt_in.weight", 2)[1],
            "pooled_projection_dim": shape_of(shapes, "vector_in.in_layer.weight", 2)[1],
            "guidance_embeds": "guidance_in.in_layer.weight" in shapes,
            "axes_dims_rope": axes}


def rotary_axes(head_dim: int, name: str) -> tuple[int, int, int]:
    """FLUX.1's rotary axes (16, 56, 56) for 128-wide heads, scaled to other head widths (the
    transformer's and a FLUX ControlNet's)."""
    axis = head_dim // 8
    sides = (head_dim - axis) // 2
    if axis % 2 or sides % 2 or axis + 2 * sides != head_dim:
        raise CheckpointError(f"{name}: {head_dim}-wide attention heads cannot take FLUX's 3-axis rotary "
                              "embedding")
    return (axis, sides, sides)


def vae_config(shapes: dict, name: str) -> dict:
    """diffusers' AutoencoderKL config for FLUX's VAE (BFL's ae layout, keys from ``encoder.``)."""
    return vae16_config(shapes, name, "FLUX", VAE_SCALING, VAE_SHIFT)


def resolve_flux_files(checkpoint: str | os.PathLike, text_encoders: list | tuple = (),
                       vae: str | None = None) -> FluxFiles:
    """The transformer in ``checkpoint`` with its text encoders and VAE (from ``text_encoders`` /
    ``vae``, else from the checkpoint itself), each checked against the transformer's shapes."""
    checkpoint = os.fspath(checkpoint)
    shapes = read_shapes(checkpoint)
    name = Path(checkpoint).name
    prefix = transformer_prefix(shapes)
    if prefix is None:
        raise CheckpointError(f"{name} holds no FLUX.1 transformer (double_blocks.* missing)")
    transformer = part(checkpoint, shapes, prefix)
    config = transformer_config(transformer.shapes, name)
    clip = part(checkpoint, shapes, CHECKPOINT_CLIP_L) if f"{CHECKPOINT_CLIP_L}{CLIP_MARK}" in shapes else None
    t5 = part(checkpoint, shapes, CHECKPOINT_T5) if f"{CHECKPOINT_T5}{T5_MARK}" in shapes else None
    clips, given_t5 = sort_text_encoders(text_encoders, TEXT_ENCODER_FILES)
    if len(clips) > 1:
        raise CheckpointError(f"--text-encoders: {len(clips)} CLIP files ({', '.join(c.name for c in clips)}); FLUX "
                              f"takes one, CLIP-L: {TEXT_ENCODER_FILES}")
    clip, t5 = (clips[0] if clips else clip), (given_t5 or t5)
    missing = [what for what, item in (("clip_l.safetensors", clip), ("t5xxl_fp16.safetensors", t5)) if item is None]
    if missing:
        raise CheckpointError(f"{name} is a FLUX diffusion model without its text encoders ({' and '.join(missing)} "
                              f"missing); pass {TEXT_ENCODER_FILES}")
    if clip_width(clip) != config["pooled_projection_dim"]:
        raise CheckpointError(f"--text-encoders {clip.name}: its CLIP is {clip_width(clip)} wide, the FLUX model "
                              f"takes {config['pooled_projection_dim']} (CLIP-L); give clip_l.safetensors")
    if t5_width(t5) != config["joint_attention_dim"]:
        raise CheckpointError(f"--text-encoders {t5.name}: its T5 is {t5_width(t5)} wide, the FLUX model takes "
                              f"{config['joint_attention_dim']} (T5-XXL); give t5xxl_fp16.safetensors or "
                              "t5xxl_fp8_e4m3fn.safetensors")
    vae_item = vae_part(checkpoint, shapes, vae, CHECKPOINT_VAE, f"{name} is a FLUX diffusion model without its VAE; "
                        "pass --vae ae.safetensors (ComfyUI's models/vae)")
    vae_config(vae_item.shapes, vae_item.name)
    return FluxFiles("dev" if config["guidance_embeds"] else "schnell", transformer, clip, t5, vae_item)


def _convert_transformer(state: dict, width: int) -> dict:
    """BFL keys -> diffusers' with diffusers' converter. It splits each single block's fused
    linear1 (q, k, v, MLP) at FLUX.1's width 3072; for any other width (distillations, the tests'
    tiny model) that one split is done here and the converter gets stand-ins of the size it expects."""
    import torch
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    fused = {}
    if width != FLUX1_WIDTH:
        for key in [k for k in state if re.fullmatch(r"single_blocks\.\d+\.linear1\.(weight|bias)", k)]:
            fused[key] = state.pop(key)
            state[key] = torch.empty((7 * FLUX1_WIDTH, *fused[key].shape[1:]), device="meta")
    converted = convert_flux_transformer_checkpoint_to_diffusers(state)
    for key, value in fused.items():
        block, kind = key.split(".")[1], key.rsplit(".", 1)[1]
        q, k, v, mlp = torch.split(value, (width, width, width, 4 * width), dim=0)
        for target, tensor in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
            converted[f"single_transformer_blocks.{block}.{target}.{kind}"] = tensor
    return converted


def load_flux(files: FluxFiles, tokenizer_dir: str | None = None, t5_tokenizer_dir: str | None = None, dtype=None):
    """diffusers FluxPipeline (on the CPU, in ``dtype``: float32 by default) from ``files``, offline."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    quiet_libraries()
    tokenizer = clip_tokenizer(find_tokenizer(tokenizer_dir))
    tokenizer_2 = t5_tokenizer(t5_tokenizer_dir)
    config = transformer_config(files.transformer.shapes, files.transformer.name)
    with torch.device("meta"):      # the file's tensors become its parameters (parts.py)
        transformer = FluxTransformer2DModel.from_config(config)
    try:
        state = _convert_transformer(read_part(files.transformer, dtype), transformer.config.num_attention_heads
                                     * transformer.config.attention_head_dim)
    except (KeyError, RuntimeError, ValueError) as exc:     # a block missing a tensor, or a wrong size
        raise CheckpointError(f"{files.transformer.name}: its FLUX transformer does not fit the FLUX.1 layout "
                              f"({str(exc).splitlines()[0][:160]})") from None
    transformer = load_strict(transformer, state, "FLUX transformer", files.transformer.name, "FLUX.1", assign=True)
    text_encoder = load_clip(files.clip_l, "CLIP-L", dtype=dtype)
    text_encoder_2 = load_t5(files.t5, dtype)
    vae = load_vae16(files.vae, vae_config(files.vae.shapes, files.vae.name), "FLUX", dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(**(DEV_SCHEDULER if files.variant == "dev" else SCHNELL_SCHEDULER))
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
