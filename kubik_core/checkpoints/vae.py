"""The autoencoder of a single-file checkpoint: the KL VAE every SD1.x / SDXL model ships, or a
TAESD that small files (such as the tiny test checkpoint) carry in its place.

The KL config is read off the shapes under ``first_stage_model.``; only the latent scale differs
between the families (SD1.x 0.18215, SDXL 0.13025).
"""
from __future__ import annotations

import re

from .layout import TAESD_DECODER, TAESD_ENCODER, VAE, CheckpointError, count_indexed
from .modules import load_strict

SD15_SCALING = 0.18215
SDXL_SCALING = 0.13025


def has_taesd(shapes: dict) -> bool:
    return f"{TAESD_ENCODER}0.weight" in shapes


def kl_vae_config(shapes: dict, scaling_factor: float = SDXL_SCALING, sample_size: int = 1024,
                  force_upcast: bool = True) -> dict:
    """diffusers' AutoencoderKL config for the KL autoencoder stored under first_stage_model."""
    levels = count_indexed(shapes, re.escape(f"{VAE}encoder.down.") + r"(\d+)\.")
    if not levels:
        raise CheckpointError("no VAE found (first_stage_model.encoder.* missing)")
    channels = [shapes[f"{VAE}encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)]
    return {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels, "in_channels": 3,
            "latent_channels": shapes[f"{VAE}quant_conv.weight"][0] // 2,
            "layers_per_block": count_indexed(shapes, re.escape(f"{VAE}encoder.down.0.block.") + r"(\d+)\."),
            "norm_num_groups": 32, "out_channels": 3, "sample_size": sample_size,
            "scaling_factor": scaling_factor, "up_block_types": ["UpDecoderBlock2D"] * levels,
            "force_upcast": force_upcast}


def _taesd_state(state: dict) -> dict:
    """ComfyUI's TAESD keys -> diffusers AutoencoderTiny's (ComfyUI's decoder starts with a Clamp
    module that diffusers folds into its forward, so decoder indices shift by one)."""
    out = {}
    for key, value in state.items():
        if key.startswith(TAESD_ENCODER):
            index, _, rest = key[len(TAESD_ENCODER):].partition(".")
            out[f"encoder.layers.{index}.{rest}"] = value
        elif key.startswith(TAESD_DECODER):
            index, _, rest = key[len(TAESD_DECODER):].partition(".")
            out[f"decoder.layers.{int(index) - 1}.{rest}"] = value
    return out


def sd15_vae(state: dict, shapes: dict, name: str):
    """The VAE of an SD1.x checkpoint: diffusers' AutoencoderTiny for a TAESD, else the KL
    autoencoder (config from the shapes, with SD1.5's latent scale)."""
    from diffusers import AutoencoderKL, AutoencoderTiny
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if has_taesd(shapes):
        return load_strict(AutoencoderTiny(), _taesd_state(state), "TAESD VAE", name)
    config = kl_vae_config(shapes, scaling_factor=SD15_SCALING, sample_size=512, force_upcast=False)
    vae = AutoencoderKL.from_config({k: v for k, v in config.items() if k != "_class_name"})
    return load_strict(vae, convert_ldm_vae_checkpoint(state, vae.config), "VAE", name)



def encode_latents(vae, pixels):
    """Scaled latents of ``pixels`` ([B, 3, H, W] in -1..1), as the UNet sees them: the KL
    posterior's mean times the latent scale, or a TAESD's latents (trained to match them)."""
    encoded = vae.encode(pixels)
    if hasattr(encoded, "latent_dist"):
        return encoded.latent_dist.mean * vae.config.scaling_factor
    return encoded.latents * vae.config.scaling_factor
