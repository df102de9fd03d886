"""A single-file SD1.x checkpoint (SD1.5 and its fine-tunes) as diffusers modules, offline.

The UNet, CLIP-L text encoder and VAE are built from configs read off the file's shapes and filled
with diffusers' own single-file converters, so nothing is fetched from the Hugging Face hub.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..common.safetensors_file import SafetensorsFileError, load_tensors
from .layout import SD15_CLIP, UNET, CheckpointError, count_indexed, prediction_type, read_shapes
from .modules import load_strict, no_init_weights
from .tokenizer import clip_tokenizer, find_tokenizer
from .vae import sd15_vae

# SD1.x's noise schedule (the same betas as SDXL; "leading" spacing as the original DDIM sampler).
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
                      clip_sample=False, set_alpha_to_one=False)


@dataclass
class SD15Model:
    """The parts of an SD1.x checkpoint, in diffusers / transformers classes (float32)."""

    unet: object
    vae: object                 # AutoencoderKL, or AutoencoderTiny where the file holds a TAESD
    text_encoder: object        # CLIP ViT-L text model
    tokenizer: object
    scheduler: object           # diffusers DDIMScheduler with SD1.x's noise schedule
    prediction_type: str        # "epsilon" or "v_prediction"


def unet_config(shapes: dict, UNET: str = UNET) -> dict:
    """diffusers' UNet2DConditionModel config for an SD1.x UNet (levels, widths, depths and the
    middle block read from the keys; 8 heads as SD1.5). ``UNET``: the key prefix (an SD1.5
    ControlNet has the same input blocks under ``control_model.``, and gets a ControlNetModel
    config)."""
    levels: list[list[tuple[int, int]]] = [[]]
    block = 1
    while f"{UNET}input_blocks.{block}.0.in_layers.0.weight" in shapes or \
            f"{UNET}input_blocks.{block}.0.op.weight" in shapes:
        if f"{UNET}input_blocks.{block}.0.op.weight" in shapes:     # a downsampler ends the level
            levels.append([])
        else:
            channels = shapes[f"{UNET}input_blocks.{block}.0.out_layers.3.weight"][0]
            depth = count_indexed(shapes, re.escape(f"{UNET}input_blocks.{block}.1.transformer_blocks.") + r"(\d+)\.")
            levels[-1].append((channels, depth))
        block += 1
    if not levels[0] or not levels[-1] or len({len(level) for level in levels}) != 1:
        raise CheckpointError("the SD1.5 UNet's levels differ in block count (model.diffusion_model."
                              "input_blocks); not an SD1.x layout")
    channels = [level[0][0] for level in levels]
    depths = [level[0][1] for level in levels]
    attention = next(k for k in shapes if k.startswith(UNET) and k.endswith("attn2.to_k.weight"))
    proj_in = next((k for k in shapes if k.startswith(UNET) and k.endswith(".proj_in.weight")), None)
    has_middle = f"{UNET}middle_block.0.in_layers.0.weight" in shapes
    if f"{UNET}out.2.weight" not in shapes:      # a ControlNet: no output half
        return {"block_out_channels": channels, "cross_attention_dim": shapes[attention][1],
                "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
                "in_channels": shapes[f"{UNET}input_blocks.0.0.weight"][1], "layers_per_block": len(levels[0]),
                "attention_head_dim": 8, "use_linear_projection": proj_in is not None and len(shapes[proj_in]) == 2,
                "mid_block_type": "UNetMidBlock2DCrossAttn" if f"{UNET}middle_block.1.proj_in.weight" in shapes
                else "UNetMidBlock2D",
                "conditioning_channels": shapes[f"{UNET}input_hint_block.0.weight"][1]}
    return {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": channels, "center_input_sample": False,
        "cross_attention_dim": shapes[attention][1],
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": shapes[f"{UNET}input_blocks.0.0.weight"][1], "layers_per_block": len(levels[0]),
        "mid_block_type": "UNetMidBlock2DCrossAttn" if has_middle else None, "norm_eps": 1e-5,
        "norm_num_groups": 32, "out_channels": shapes[f"{UNET}out.2.weight"][0], "sample_size": 64,
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        "use_linear_projection": proj_in is not None and len(shapes[proj_in]) == 2,
    }


def text_encoder_config(shapes: dict) -> dict:
    """transformers CLIPTextConfig dict for SD1.x's CLIP ViT-L text model."""
    try:
        vocab, width = shapes[f"{SD15_CLIP}embeddings.token_embedding.weight"]
        return dict(architectures=["CLIPTextModel"], model_type="clip_text_model", vocab_size=vocab,
                    hidden_size=width, intermediate_size=shapes[f"{SD15_CLIP}encoder.layers.0.mlp.fc1.weight"][0],
                    num_attention_heads=width // 64,
                    num_hidden_layers=count_indexed(shapes, re.escape(f"{SD15_CLIP}encoder.layers.") + r"(\d+)\."),
                    max_position_embeddings=shapes[f"{SD15_CLIP}embeddings.position_embedding.weight"][0],
                    hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                    bos_token_id=0, eos_token_id=2, pad_token_id=1)
    except KeyError as exc:
        raise CheckpointError(f"the text encoder is incomplete ({exc.args[0]} not found)") from None


def load_sd15(path: str | os.PathLike, tokenizer_dir: str | None = None, flag: str = "--checkpoint") -> SD15Model:
    """The parts of the SD1.x checkpoint ``path``, offline, in float32 (callers cast as they need).
    ``flag``: the option that named the file, for the error of a missing one."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    name = Path(path).name
    shapes = read_shapes(path, flag)
    unet_cfg = unet_config(shapes)
    te_cfg = text_encoder_config(shapes)
    tokenizer = clip_tokenizer(find_tokenizer(tokenizer_dir))
    try:
        state = {k: v.float() for k, v in load_tensors(path, name).items()}
    except SafetensorsFileError as exc:
        raise CheckpointError(f"{name}: its tensors cannot be read ({exc.reason})") from None
    unet = UNet2DConditionModel.from_config({k: v for k, v in unet_cfg.items() if k != "_class_name"})
    with no_init_weights():     # every weight is loaded below: skip transformers' random init
        text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    unet = load_strict(unet, convert_ldm_unet_checkpoint(state, unet.config), "UNet", name)
    # transformers names the tensors with or without "text_model." depending on its version
    prefix = "cond_stage_model.transformer." if any(
        k.startswith("text_model.") for k in text_encoder.state_dict()) else SD15_CLIP
    te_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    text_encoder = load_strict(text_encoder, te_state, "text encoder", name)
    vae = sd15_vae(state, shapes, name)
    prediction = prediction_type(shapes)
    scheduler = DDIMScheduler(**SD15_SCHEDULER, prediction_type=prediction)
    return SD15Model(unet, vae, text_encoder, tokenizer, scheduler, prediction)
