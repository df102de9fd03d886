"""A tiny random-weight Stable Diffusion 1.5 checkpoint that a real ComfyUI loads and samples with.

Browser and server tests queue the txt2img templates on the CPU; a real SD1.5 or SDXL file is
gigabytes. This builds a single-file checkpoint in the original (LDM) key layout that ComfyUI
0.8.0's ``CheckpointLoaderSimple`` detects as SD1.5 and loads like any other:

- UNet: ComfyUI's own ``UNetModel`` from the smallest config its detection still maps to SD1.5
  (``comfy/supported_models.py`` SD15 requires model_channels 320, context_dim 768, no linear
  projections, no ``label_emb``; ``comfy/model_detection.py`` reads depth and levels from the
  keys): one resolution level, one res block with one transformer block, no middle block.
- Text encoder: CLIP ViT-L/14's text model at full size, because ComfyUI builds it from its fixed
  ``sd1_clip_config.json`` whatever the file holds (123 M parameters, stored in float16).
- VAE: a TAESD (``first_stage_model.taesd_*``), which ComfyUI's ``VAE`` recognises by its keys,
  instead of the 84 M-parameter KL autoencoder: decoding stays cheap on the CPU.

The modules are built on the meta device from ComfyUI's classes (so key names and shapes are
exactly what its loader expects) and filled with seeded random values. ComfyUI must not be imported
into the test process, so :func:`build_tiny_sd15_checkpoint` runs this file in a subprocess.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[2]

# The smallest UNet config that comfy/model_detection.py still reads back as SupportedModel SD15.
TINY_UNET_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
    channel_mult=[1], transformer_depth=[1], transformer_depth_output=[1, 1],
    transformer_depth_middle=-2, context_dim=768, use_linear_in_transformer=False,
    num_heads=8, num_head_channels=-1, use_spatial_transformer=True, legacy=False,
    adm_in_channels=None, use_checkpoint=False,
)


# A tiny SDXL-family UNet: ComfyUI detects SDXL relatives by model_channels 320, linear
# projections, context_dim 2048 (CLIP-L 768 + CLIP-G 1280 hidden states side by side),
# adm_in_channels 2816 (pooled CLIP-G 1280 + six 256-wide size embeddings) and the exact list of
# transformer depths; [0, 0, 1, 1, 2, 2] is Segmind Vega's, the smallest SDXL distillation it knows
# (supported_models.Segmind_Vega, a subclass of SDXL with SDXL's CLIP and LoRA key space). Every
# level keeps 320 channels (channel_mult is read from the keys, not matched) to stay small.
TINY_SDXL_UNET_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 1, 1], transformer_depth=[0, 0, 1, 1, 2, 2],
    transformer_depth_output=[0, 0, 0, 1, 1, 1, 2, 2, 2], transformer_depth_middle=2,
    context_dim=2048, use_linear_in_transformer=True, num_heads=-1, num_head_channels=64,
    use_spatial_transformer=True, legacy=False, num_classes="sequential", adm_in_channels=2816,
    use_checkpoint=False,
)
# Text encoders with SDXL's layer shapes (ComfyUI builds CLIP-L and bigG at full size whatever
# the file holds, so every stored tensor must fit them) but two layers instead of 12 and 32.
TINY_CLIP_L_CONFIG = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                          num_hidden_layers=2, max_position_embeddings=77, vocab_size=49408,
                          hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                          bos_token_id=0, eos_token_id=49407, pad_token_id=1)
TINY_CLIP_G_CONFIG = dict(TINY_CLIP_L_CONFIG, hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
                          hidden_act="gelu", projection_dim=1280)
# An 8x-downsampling KL autoencoder with 32-64 channels instead of SDXL's 128-512.
TINY_SDXL_VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3,
                              ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                              dropout=0.0)


def build_tiny_sd15_checkpoint(path: Path, comfyui_dir: Path, python: str | None = None, seed: int = 0) -> Path:
    """Write the checkpoint to ``path`` (atomically) with ComfyUI's classes; returns ``path``."""
    return _run_builder(path, comfyui_dir, python, seed, "sd15")


def build_tiny_sdxl_checkpoint(path: Path, comfyui_dir: Path, python: str | None = None, seed: int = 0) -> Path:
    """Write a tiny SDXL-family single-file checkpoint (SGM key layout, as ComfyUI's
    CheckpointSave and A1111 write SDXL files) to ``path``; ComfyUI detects it as Segmind Vega
    (an SDXL). ~260 M parameters, half of them the text encoders' 49408-token embeddings."""
    return _run_builder(path, comfyui_dir, python, seed, "sdxl")


def _run_builder(path: Path, comfyui_dir: Path, python: str | None, seed: int, family: str) -> Path:
    """Build in a subprocess, once per test run for each family and seed (built_once.py): later
    callers get a hard link to the same file."""
    from kubik_testing.built_once import place

    python = python or sys.executable
    comfyui_dir = Path(comfyui_dir).resolve()

    def build(target: Path) -> None:
        # ComfyUI for its model classes, the repository for kubik_core's atomic write.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(comfyui_dir), str(_REPOSITORY))))
        done = subprocess.run([python, __file__, str(target), "--seed", str(seed), "--family", family],
                              cwd=comfyui_dir, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"building the tiny checkpoint failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")

    return place(("tiny_checkpoint", family, seed, python, str(comfyui_dir)), path, build)


def _random_state_dict(modules: dict, seed: int):
    """Seeded values for every tensor of the meta-device ``modules`` ({key prefix: module}).

    Biases (and TAESD's latent shift) are 0, other one-dimensional weights (norm scales, TAESD's
    latent scale) 1, matrices and kernels N(0, 1/fan_in) (LeCun): activations keep their size
    through the layers, so sampling gives finite pictures with visible noise rather than NaNs or
    a flat black.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, module in modules.items():
        for name, meta in module.state_dict().items():
            if name.endswith("bias") or name == "vae_shift":
                value = torch.zeros(meta.shape)
            elif meta.dim() <= 1:
                value = torch.ones(meta.shape)
            else:
                fan_in = meta[0].numel()
                value = torch.randn(meta.shape, generator=generator) / fan_in ** 0.5
            state[prefix + name] = value.to(torch.float16).contiguous()
    return state


def _build(out: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    import comfy.cli_args

    comfy.cli_args.args.cpu = True      # as `main.py --cpu`: nothing here may look for a GPU
    import comfy.ops
    import comfy.sd1_clip
    import comfy.taesd.taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**TINY_UNET_CONFIG, device="meta", operations=comfy.ops.disable_weight_init)
        clip = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float16)
        taesd = comfy.taesd.taesd.TAESD()
    # LDM layout: what CheckpointLoaderSimple expects of an SD1.5 file (SD15.process_clip_state_dict
    # maps cond_stage_model.transformer.* to clip_l.transformer.*; the projection and logit scale
    # are not part of an SD1.5 file).
    state = _random_state_dict({"model.diffusion_model.": unet, "cond_stage_model.": clip,
                                "first_stage_model.": taesd}, seed)
    for key in ("cond_stage_model.logit_scale", "cond_stage_model.transformer.text_projection.weight"):
        state.pop(key, None)
    from kubik_core.common.atomic import atomic_path

    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"modelspec.architecture": "stable-diffusion-v1",
                                             "modelspec.title": "KubikAI tiny random test checkpoint"})


def _build_sdxl(out: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.clip_model
    import comfy.ops
    import comfy.supported_models
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        unet = UNetModel(**TINY_SDXL_UNET_CONFIG, device="meta", operations=ops)
        clip_l = comfy.clip_model.CLIPTextModel(TINY_CLIP_L_CONFIG, None, "meta", ops)
        clip_g = comfy.clip_model.CLIPTextModel(TINY_CLIP_G_CONFIG, None, "meta", ops)
        vae = AutoencoderKL(embed_dim=4, ddconfig=TINY_SDXL_VAE_DDCONFIG)
    state = _random_state_dict({"": unet, "clip_l.transformer.": clip_l, "clip_g.transformer.": clip_g,
                                "vae.": vae}, seed)
    unet_sd = {k: v for k, v in state.items() if not k.startswith(("clip_", "vae."))}
    clip_sd = {k: v for k, v in state.items() if k.startswith("clip_")}
    vae_sd = {k[len("vae."):]: v for k, v in state.items() if k.startswith("vae.")}
    # The same conversions ComfyUI's CheckpointSave applies to an SDXL model (SGM layout:
    # conditioner.embedders.0 = CLIP-L, conditioner.embedders.1.model = OpenCLIP bigG).
    config = comfy.supported_models.Segmind_Vega(dict(TINY_SDXL_UNET_CONFIG))
    full = config.process_unet_state_dict_for_saving(unet_sd)
    full.update(config.process_clip_state_dict_for_saving(clip_sd))
    full.update(config.process_vae_state_dict_for_saving(vae_sd))
    full = {k: v.to(torch.float16).contiguous() for k, v in full.items()}
    from kubik_core.common.atomic import atomic_path

    with atomic_path(out) as tmp:
        save_file(full, str(tmp), metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base",
                                            "modelspec.title": "KubikAI tiny random SDXL test checkpoint"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", choices=("sd15", "sdxl"), default="sd15")
    args = parser.parse_args()
    (_build_sdxl if args.family == "sdxl" else _build)(args.out, args.seed)
