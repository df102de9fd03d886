"""A single-file SDXL checkpoint (SDXL, Pony, Illustrious, the SDXL distillations) as diffusers
modules, offline.

diffusers' ``from_single_file`` converts the original key layout, but it wants the diffusers
configs of the model, which it would fetch from the Hugging Face hub. Here they are built from
the checkpoint's own tensor shapes instead (SDXL base's settings, with the widths and depths the
file has), so every SDXL-family file loads without a network, and so does the tiny SDXL-shaped
checkpoint the tests build.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .layout import CLIP_G, CLIP_L, UNET, CheckpointError, count_indexed, prediction_type, read_shapes, \
    unet_original_names
from .modules import quiet_libraries
from .tokenizer import clip_tokenizer, find_tokenizer
from .vae import SDXL_SCALING, kl_vae_config

# SDXL's diffusers scheduler settings (the noise schedule every SDXL model was trained with).
SDXL_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
                      clip_sample=False)
HEAD_WIDTH = 64   # SDXL attention heads are 64 channels wide in the UNet and both text encoders


@dataclass
class SDXLModel:
    """The parts of an SDXL checkpoint, in diffusers / transformers classes (float32)."""

    unet: object
    vae: object
    text_encoder: object        # CLIP ViT-L text model ("te1")
    text_encoder_2: object      # OpenCLIP bigG text model with projection ("te2")
    tokenizer: object
    tokenizer_2: object
    scheduler: object           # diffusers DDPMScheduler with SDXL's noise schedule
    prediction_type: str        # "epsilon" or "v_prediction"
    unet_original_names: dict   # diffusers UNet module path -> its path in the file (LDM layout)


def unet_config(shapes: dict) -> dict:
    """diffusers' UNet2DConditionModel config for the SDXL-family UNet whose LDM tensors are
    ``shapes`` (levels, channels and transformer depths read from the keys)."""
    levels, block = [], 1
    while f"{UNET}input_blocks.{block}.0.in_layers.0.weight" in shapes or \
            f"{UNET}input_blocks.{block}.0.op.weight" in shapes:
        if f"{UNET}input_blocks.{block}.0.op.weight" in shapes:   # a downsampler ends the level
            block += 1
            levels.append(None)
            continue
        if not levels or levels[-1] is None:
            if levels:
                levels.pop()
            levels.append([])
        channels = shapes[f"{UNET}input_blocks.{block}.0.out_layers.3.weight"][0]
        depth = count_indexed(shapes, re.escape(f"{UNET}input_blocks.{block}.1.transformer_blocks.") + r"(\d+)\.")
        levels[-1].append((channels, depth))
        block += 1
    if not levels or levels[-1] is None:
        raise CheckpointError("no SDXL UNet found (model.diffusion_model.input_blocks.* missing)")
    per_level = {len(level) for level in levels}
    if len(per_level) != 1 or any(len({d for _, d in level}) != 1 for level in levels):
        raise CheckpointError("the UNet's levels differ in block count or depth; not an SDXL layout")
    channels = [level[0][0] for level in levels]
    depths = [level[0][1] for level in levels]
    middle = count_indexed(shapes, re.escape(f"{UNET}middle_block.1.transformer_blocks.") + r"(\d+)\.")
    if middle != depths[-1] or f"{UNET}label_emb.0.0.weight" not in shapes:
        raise CheckpointError("the UNet is not SDXL-shaped (middle block depth or the size "
                              "embedding label_emb differs)")
    context = shapes[f"{UNET}input_blocks.{_first_attention_block(shapes)}.1.transformer_blocks.0.attn2.to_k.weight"][1]
    return {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
        "attention_head_dim": [c // HEAD_WIDTH for c in channels], "block_out_channels": channels,
        "center_input_sample": False, "conv_in_kernel": 3, "conv_out_kernel": 3,
        "cross_attention_dim": context, "down_block_types":
            ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": shapes[f"{UNET}input_blocks.0.0.weight"][1], "layers_per_block": per_level.pop(),
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-5, "norm_num_groups": 32,
        "out_channels": shapes[f"{UNET}out.2.weight"][0],
        "projection_class_embeddings_input_dim": shapes[f"{UNET}label_emb.0.0.weight"][1],
        "sample_size": 128, "transformer_layers_per_block": [max(d, 1) for d in depths],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        "use_linear_projection": True,
    }


def _first_attention_block(shapes: dict) -> int:
    for key in shapes:
        m = re.match(re.escape(UNET) + r"input_blocks\.(\d+)\.1\.transformer_blocks\.0\.attn2\.to_k\.weight$", key)
        if m:
            return int(m.group(1))
    raise CheckpointError("the UNet has no cross-attention; not an SDXL model")


def text_encoder_configs(shapes: dict) -> tuple[dict, dict]:
    """transformers CLIPTextConfig dicts for CLIP-L (te1) and OpenCLIP bigG (te2)."""
    try:
        vocab, width_l = shapes[f"{CLIP_L}embeddings.token_embedding.weight"]
        vocab_g, width_g = shapes[f"{CLIP_G}token_embedding.weight"]
        te1 = dict(architectures=["CLIPTextModel"], model_type="clip_text_model", vocab_size=vocab,
                   hidden_size=width_l, intermediate_size=shapes[f"{CLIP_L}encoder.layers.0.mlp.fc1.weight"][0],
                   num_attention_heads=width_l // HEAD_WIDTH,
                   num_hidden_layers=count_indexed(shapes, re.escape(f"{CLIP_L}encoder.layers.") + r"(\d+)\."),
                   max_position_embeddings=shapes[f"{CLIP_L}embeddings.position_embedding.weight"][0],
                   hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                   bos_token_id=0, eos_token_id=2, pad_token_id=1)
        te2 = dict(te1, architectures=["CLIPTextModelWithProjection"], vocab_size=vocab_g, hidden_size=width_g,
                   intermediate_size=shapes[f"{CLIP_G}transformer.resblocks.0.mlp.c_fc.weight"][0],
                   num_attention_heads=width_g // HEAD_WIDTH,
                   num_hidden_layers=count_indexed(shapes, re.escape(f"{CLIP_G}transformer.resblocks.") + r"(\d+)\."),
                   max_position_embeddings=shapes[f"{CLIP_G}positional_embedding"][0],
                   hidden_act="gelu", projection_dim=shapes[f"{CLIP_G}text_projection"][1])
    except KeyError as exc:
        raise CheckpointError(f"the text encoders are missing ({exc.args[0]} not found): SDXL "
                              "checkpoints hold CLIP-L and OpenCLIP bigG") from None
    return te1, te2


def describe(shapes: dict) -> dict:
    """Every diffusers / transformers config the SDXL checkpoint with ``shapes`` needs."""
    te1, te2 = text_encoder_configs(shapes)
    return {"unet": unet_config(shapes), "vae": kl_vae_config(shapes, scaling_factor=SDXL_SCALING),
            "text_encoder": te1, "text_encoder_2": te2, "prediction_type": prediction_type(shapes)}


def load_sdxl(path: str | os.PathLike, tokenizer_dir: str | None = None, flag: str = "--checkpoint") -> SDXLModel:
    """The parts of the SDXL checkpoint ``path``, offline, in float32 (callers cast as they need).
    ``flag``: the option that named the file, for the error of a missing one."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline

    quiet_libraries()
    shapes = read_shapes(path, flag)
    configs = describe(shapes)
    vocab = find_tokenizer(tokenizer_dir)
    tokenizer = clip_tokenizer(vocab)
    tokenizer_2 = clip_tokenizer(vocab, pad_token="!")
    scheduler = DDPMScheduler(**SDXL_SCHEDULER, prediction_type=configs["prediction_type"])
    with tempfile.TemporaryDirectory(prefix="kubik-sdxl-config-") as folder:
        root = Path(folder)
        index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
                 "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
                 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
        (root / "model_index.json").write_text(json.dumps(index))
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            (root / name).mkdir()
            (root / name / "config.json").write_text(json.dumps(configs[name]))
        try:
            pipe = StableDiffusionXLPipeline.from_single_file(
                os.fspath(path), config=str(root), local_files_only=True, torch_dtype=torch.float32,
                tokenizer=tokenizer, tokenizer_2=tokenizer_2, scheduler=scheduler)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"{Path(path).name}: diffusers could not load it as SDXL "
                                  f"({str(exc).splitlines()[0][:200]})") from None
    return SDXLModel(pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, tokenizer,
                     tokenizer_2, scheduler, configs["prediction_type"],
                     unet_original_names(shapes, configs["unet"]))
