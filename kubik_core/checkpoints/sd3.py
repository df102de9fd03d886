"""SD3 and SD3.5 (Large, Large Turbo, Medium) from the files ComfyUI users have, as diffusers'
StableDiffusion3Pipeline, offline.

ComfyUI users keep an SD3.5 model as Stability ships it: a checkpoint holding the MMDiT
(``model.diffusion_model.joint_blocks.*``) and the VAE (``first_stage_model.``), with the text
encoders in models/text_encoders (``clip_l.safetensors``, ``clip_g.safetensors``,
``t5xxl_fp16.safetensors``, given with ``--text-encoders``); or as an all-in-one file that also
holds them under ``text_encoders.clip_l|clip_g|t5xxl.transformer.``; or a bare diffusion model
(models/diffusion_models) with ``--vae``. T5 may be left out, as ComfyUI allows: the prompt is
then encoded by the two CLIPs alone (weaker prompt following).

The MMDiT's config is read off its shapes (width = 64 x heads, depth, context and pooled widths,
positions, RMS q/k norms = SD3.5, a second attention in some blocks = SD3.5 Medium's MMDiT-X),
its tensors converted with diffusers' own ``convert_sd3_transformer_checkpoint_to_diffusers``.
CLIP-L pools unprojected and CLIP-G projected, as ComfyUI and diffusers' own single-file loader
use them. Every file is checked against the others from the headers before a tensor is read.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .layout import UNET, VAE, CheckpointError, count_indexed, read_shapes
from .modules import load_strict, quiet_libraries
from .parts import (CLIP_MARK, T5_MARK, MultiFileInfo, Part, clip_width, is_quantised, load_clip, load_t5,
                    load_vae16, part, read_part, shape_of, sort_text_encoders, t5_tokenizer, t5_width, vae16_config,
                    vae_part)
from .tokenizer import clip_tokenizer, find_tokenizer

# Where an all-in-one SD3 file keeps its text encoders (ComfyUI's supported_models.SD3).
CHECKPOINT_TEXT = {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer.",
                   "t5": "text_encoders.t5xxl.transformer."}
HEAD_WIDTH = 64               # SD3's MMDiT: heads of 64 (ComfyUI: hidden = 64 x depth)
# SD3's VAE latent normalisation (ComfyUI latent_formats.SD3; diffusers' SD3 vae config).
VAE_SCALING, VAE_SHIFT = 1.5305, 0.0609
# diffusers' SD3/SD3.5 scheduler config (FlowMatchEulerDiscreteScheduler, shift 3 as ComfyUI's SD3).
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)
TEXT_ENCODER_FILES = ("--text-encoders clip_l.safetensors clip_g.safetensors t5xxl_fp16.safetensors (ComfyUI's "
                      "models/text_encoders)")


@dataclass
class SD3Files:
    """The parts of an SD3/SD3.5 model, found and checked against each other from the headers."""

    transformer: Part
    clip_l: Part
    clip_g: Part
    t5: Part | None
    vae: Part

    def component_bytes(self) -> dict:
        return {"transformer": self.transformer.nbytes, "text_encoder": self.clip_l.nbytes,
                "text_encoder_2": self.clip_g.nbytes, "text_encoder_3": self.t5.nbytes if self.t5 else 0,
                "vae": self.vae.nbytes}

    def largest_tensor_bytes(self) -> int:
        return max(p.largest for p in (self.transformer, self.clip_l, self.clip_g, self.t5, self.vae) if p)


def transformer_config(shapes: dict, name: str) -> dict:
    """diffusers' SD3Transformer2DModel config from an MMDiT's shapes (keys without prefix)."""
    try:
        hidden, in_channels, patch, _ = shape_of(shapes, "x_embedder.proj.weight", 4)
        positions = shape_of(shapes, "pos_embed", 3)[1]
        caption, joint = shape_of(shapes, "context_embedder.weight", 2)
        pooled = shape_of(shapes, "y_embedder.mlp.0.weight", 2)[1]
        out = shape_of(shapes, "final_layer.linear.weight", 2)[0]
    except KeyError as exc:
        raise CheckpointError(f"{name}: its MMDiT does not have SD3's layout (no {exc.args[0]} of the expected "
                              "shape)") from None
    side = math.isqrt(positions)
    layers = count_indexed(shapes, r"joint_blocks\.(\d+)\.")
    if hidden % HEAD_WIDTH or side * side != positions or out % (patch * patch) or not layers:
        raise CheckpointError(f"{name}: its MMDiT does not have SD3's proportions (width {hidden} in heads of "
                              f"{HEAD_WIDTH}, a square position table, {layers} joint blocks)")
    return {"sample_size": 128, "patch_size": patch, "in_channels": in_channels, "num_layers": layers,
            "attention_head_dim": HEAD_WIDTH, "num_attention_heads": hidden // HEAD_WIDTH,
            "joint_attention_dim": joint, "caption_projection_dim": caption, "pooled_projection_dim": pooled,
            "out_channels": out // (patch * patch), "pos_embed_max_size": side,
            "dual_attention_layers": tuple(i for i in range(layers) if f"joint_blocks.{i}.x_block.attn2.qkv.weight"
                                           in shapes),
            "qk_norm": "rms_norm" if "joint_blocks.0.x_block.attn.ln_q.weight" in shapes else None}


def header_families(config: dict) -> tuple[tuple, str]:
    """(the optimizer's family ids the MMDiT's shapes allow, what they say the model is)."""
    if config["dual_attention_layers"]:
        return ("sd35_medium",), "SD3.5 Medium (MMDiT-X: a second attention in some blocks)"
    if config["qk_norm"]:
        return ("sd35_large", "sd35_large_turbo"), "SD3.5 Large or Large Turbo (q/k norms, one attention)"
    return ("sd3",), "SD3 Medium (no q/k norms)"


def inspect_sd3(checkpoint: str | os.PathLike, text_encoders: list | tuple = (),
                vae: str | None = None) -> MultiFileInfo:
    """The SD3 model's parts and sizes from the headers (no tensor is read)."""
    files = resolve_sd3_files(checkpoint, text_encoders, vae)
    families, described = header_families(transformer_config(files.transformer.shapes, files.transformer.name))
    return MultiFileInfo(os.fspath(checkpoint), "sd3", files.component_bytes(), "kl", "flow",
                         files.largest_tensor_bytes(), files, families, described)


def resolve_sd3_files(checkpoint: str | os.PathLike, text_encoders: list | tuple = (),
                      vae: str | None = None) -> SD3Files:
    """The MMDiT in ``checkpoint`` with its text encoders and VAE (from ``text_encoders`` /
    ``vae``, else from the checkpoint), each checked against the MMDiT's shapes."""
    checkpoint = os.fspath(checkpoint)
    shapes = read_shapes(checkpoint)
    name = Path(checkpoint).name
    prefix = next((p for p in (UNET, "") if f"{p}joint_blocks.0.x_block.attn.qkv.weight" in shapes), None)
    if prefix is None:
        raise CheckpointError(f"{name} holds no SD3 MMDiT (joint_blocks.* missing)")
    transformer = part(checkpoint, shapes, prefix)
    config = transformer_config(transformer.shapes, name)
    if is_quantised(transformer.shapes):
        raise CheckpointError(f"{name} holds quantised weights (scaled fp8 or NF4); give the fp16/bf16 file")
    inside = {role: part(checkpoint, shapes, key) for role, key in CHECKPOINT_TEXT.items()
              if f"{key}{T5_MARK if role == 't5' else CLIP_MARK}" in shapes}
    clips, t5 = sort_text_encoders(text_encoders, TEXT_ENCODER_FILES)
    if len(clips) == 2:       # CLIP-G (1280) is the wider of the two, CLIP-L (768) the narrower
        inside["clip_l"], inside["clip_g"] = sorted(clips, key=clip_width)
    elif clips:
        raise CheckpointError(f"--text-encoders: {len(clips)} CLIP files ({', '.join(c.name for c in clips)}); SD3 "
                              f"takes two, CLIP-L and CLIP-G: {TEXT_ENCODER_FILES}")
    if t5 is not None:
        inside["t5"] = t5
    missing = [f"{role}.safetensors" for role in ("clip_l", "clip_g") if role not in inside]
    if missing:
        raise CheckpointError(f"{name} is an SD3 model without its text encoders ({' and '.join(missing)} missing); "
                              f"pass {TEXT_ENCODER_FILES}")
    clip_l, clip_g = inside["clip_l"], inside["clip_g"]
    if clip_width(clip_l) + clip_width(clip_g) != config["pooled_projection_dim"] or clip_width(clip_l) == \
            clip_width(clip_g) or max(clip_width(clip_l), clip_width(clip_g)) > config["joint_attention_dim"]:
        raise CheckpointError(f"--text-encoders: CLIPs {clip_width(clip_l)} and {clip_width(clip_g)} wide; the SD3 "
                              f"model takes CLIP-L and CLIP-G whose widths add up to {config['pooled_projection_dim']}"
                              " (768 + 1280): give clip_l.safetensors and clip_g.safetensors")
    t5 = inside.get("t5")
    if t5 is not None and t5_width(t5) != config["joint_attention_dim"]:
        raise CheckpointError(f"--text-encoders {t5.name}: its T5 is {t5_width(t5)} wide, the SD3 model takes "
                              f"{config['joint_attention_dim']} (T5-XXL); give t5xxl_fp16.safetensors")
    vae_item = vae_part(checkpoint, shapes, vae, VAE, f"{name} is an SD3 diffusion model without its VAE; pass --vae "
                        "with SD3's VAE (ComfyUI's models/vae)")
    vae16_config(vae_item.shapes, vae_item.name, "SD3", VAE_SCALING, VAE_SHIFT)
    return SD3Files(transformer, clip_l, clip_g, t5, vae_item)


def load_sd3(files: SD3Files, tokenizer_dir: str | None = None, t5_tokenizer_dir: str | None = None, dtype=None):
    """diffusers StableDiffusion3Pipeline (on the CPU, in ``dtype``: float32 by default) from
    ``files``, offline."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    quiet_libraries()
    vocab = find_tokenizer(tokenizer_dir)
    tokenizer_3 = t5_tokenizer(t5_tokenizer_dir) if files.t5 is not None else None
    config = transformer_config(files.transformer.shapes, files.transformer.name)
    with torch.device("meta"):      # the file's tensors become its parameters (parts.py)
        transformer = SD3Transformer2DModel.from_config(config)
    try:
        state = convert_sd3_transformer_checkpoint_to_diffusers(read_part(files.transformer, dtype))
    except (KeyError, RuntimeError, ValueError) as exc:     # a block missing a tensor, or a wrong size
        raise CheckpointError(f"{files.transformer.name}: its MMDiT does not fit the SD3 layout "
                              f"({str(exc).splitlines()[0][:160]})") from None
    transformer = load_strict(transformer, state, "MMDiT", files.transformer.name, "SD3", assign=True)
    config = vae16_config(files.vae.shapes, files.vae.name, "SD3", VAE_SCALING, VAE_SHIFT)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        vae=load_vae16(files.vae, config, "SD3", dtype),
        text_encoder=load_clip(files.clip_l, "CLIP-L", "quick_gelu", projection="identity", dtype=dtype),
        tokenizer=clip_tokenizer(vocab),
        text_encoder_2=load_clip(files.clip_g, "CLIP-G", "gelu", projection="file", dtype=dtype),
        tokenizer_2=clip_tokenizer(vocab, pad_token="!"),      # OpenCLIP pads with "!", as for SDXL
        text_encoder_3=load_t5(files.t5, dtype) if files.t5 is not None else None, tokenizer_3=tokenizer_3)
