"""Tiny random-weight SD3.5-shaped model files, in the layouts ComfyUI users have them.

SD3.5 comes as a checkpoint holding the MMDiT and the VAE (``model.diffusion_model.``,
``first_stage_model.``, as Stability ships sd3.5_large.safetensors) with the text encoders in
models/text_encoders (clip_l, clip_g, t5xxl), or as an all-in-one file that also holds them under
``text_encoders.clip_l|clip_g|t5xxl.transformer.`` (sd3_medium_incl_clips_t5xxlfp16). This writes
both at toy sizes with ComfyUI's own classes (built on the meta device, seeded random values as
tiny_checkpoint._random_state_dict):

- ``sd3.5-medium-tiny-checkpoint.safetensors``: all-in-one; the MMDiT with RMS q/k norms and a
  second attention in block 0 (SD3.5 Medium's MMDiT-X);
- ``sd3.5-large-tiny.safetensors``: MMDiT (q/k norms, no second attention: SD3.5 Large) + VAE;
- ``clip_l-tiny.safetensors``, ``clip_g-tiny.safetensors``, ``t5xxl-tiny.safetensors``;
- ``sd3.5-medium-tiny-reference.safetensors``: ComfyUI's MMDiT forward pass on the medium
  weights (inputs and output), what a correct conversion must reproduce.

Sizes: MMDiT depth 2 (ComfyUI's rule: 64 x depth wide, heads of 64), 16 latent channels in 2x2
patches, positions for 16x16 patches; CLIP-L 64 and CLIP-G 96 wide (their pooled outputs side by
side: 160, the MMDiT's vector input), T5 192 wide (the context width, at least the CLIPs' 160 as
SD3 pads their hidden states to T5's width); the VAE as tiny_flux's. ComfyUI must not be imported
into the test process, so :func:`build_tiny_sd3_files` runs this file in a subprocess (tiny_parts.py,
shared with tiny_flux.py, which writes the same CLIP-L and VAE).
"""
from __future__ import annotations

from pathlib import Path

from kubik_testing.tiny_parts import (TINY_CLIP_L_CONFIG, comfy_cpu_operations, main, run_builder, tiny_vae,
                                      write_files)

TINY_MMDIT_CONFIG = dict(input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2, num_patches=256,
                         pos_embed_max_size=16, adm_in_channels=160, qk_norm="rms",
                         context_embedder_config={"target": "torch.nn.Linear",
                                                  "params": {"in_features": 192, "out_features": 128}})
TINY_CLIP_G_CONFIG = dict(hidden_size=96, intermediate_size=192, num_attention_heads=1, num_hidden_layers=2,
                          max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", layer_norm_eps=1e-5,
                          projection_dim=96, bos_token_id=0, eos_token_id=49407, pad_token_id=1)
TINY_SD3_T5_CONFIG = dict(d_ff=128, d_kv=16, d_model=192, num_heads=4, num_layers=2, vocab_size=32128,
                          dense_act_fn="gelu_pytorch_tanh", is_gated_act=True, model_type="t5")

FILES = {"medium": "sd3.5-medium-tiny-checkpoint.safetensors", "large": "sd3.5-large-tiny.safetensors",
         "clip_l": "clip_l-tiny.safetensors", "clip_g": "clip_g-tiny.safetensors", "t5xxl": "t5xxl-tiny.safetensors",
         "reference": "sd3.5-medium-tiny-reference.safetensors"}


def build_tiny_sd3_files(folder: Path, comfyui_dir: Path, python: str | None = None, seed: int = 0) -> dict:
    """Write the files of the module docstring into ``folder``; returns {kind: path}."""
    return run_builder(__file__, folder, FILES, comfyui_dir, python, seed, "SD3.5")


def _build(folder: Path, seed: int) -> None:
    import torch

    ops = comfy_cpu_operations()
    import comfy.clip_model
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    from comfy.text_encoders.t5 import T5
    from kubik_testing.tiny_checkpoint import _random_state_dict

    with torch.device("meta"):
        medium = MMDiT(**TINY_MMDIT_CONFIG, x_block_self_attn_layers=[0], dtype=torch.float16, device="meta",
                       operations=ops)
        large = MMDiT(**TINY_MMDIT_CONFIG, dtype=torch.float16, device="meta", operations=ops)
        clip_l = comfy.clip_model.CLIPTextModel(TINY_CLIP_L_CONFIG, None, "meta", ops)
        clip_g = comfy.clip_model.CLIPTextModel(TINY_CLIP_G_CONFIG, None, "meta", ops)
        t5 = T5(TINY_SD3_T5_CONFIG, None, "meta", ops)
        vae = tiny_vae()
    parts = {"medium": _random_state_dict({"": medium}, seed), "large": _random_state_dict({"": large}, seed + 1),
             "clip_l": _random_state_dict({"": clip_l}, seed + 2), "clip_g": _random_state_dict({"": clip_g}, seed + 3),
             "t5xxl": _random_state_dict({"": t5}, seed + 4)}
    vae_state = _random_state_dict({"": vae}, seed + 5)
    files = {
        "medium": {**{f"model.diffusion_model.{k}": v for k, v in parts["medium"].items()},
                   **{f"first_stage_model.{k}": v for k, v in vae_state.items()},
                   **{f"text_encoders.{kind}.transformer.{k}": v for kind in ("clip_l", "clip_g", "t5xxl")
                      for k, v in parts[kind].items()}},
        "large": {**{f"model.diffusion_model.{k}": v for k, v in parts["large"].items()},
                  **{f"first_stage_model.{k}": v for k, v in vae_state.items()}},
        "clip_l": parts["clip_l"], "clip_g": parts["clip_g"], "t5xxl": parts["t5xxl"],
        "reference": _reference(parts["medium"], seed),
    }
    write_files(folder, files, FILES, "SD3.5")


def _reference(state: dict, seed: int) -> dict:
    """ComfyUI's MMDiT forward pass with the medium weights: latents 16x8x8, timestep 700 (of
    1000, as ComfyUI's SD3 sampling passes it), pooled CLIP vector, 5 context tokens."""
    import torch

    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    model = MMDiT(**TINY_MMDIT_CONFIG, x_block_self_attn_layers=[0], dtype=torch.float32, device="cpu",
                  operations=comfy.ops.disable_weight_init)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    generator = torch.Generator().manual_seed(seed)
    inputs = {"x": torch.randn(1, 16, 8, 8, generator=generator), "t": torch.tensor([700.0]),
              "y": torch.randn(1, 160, generator=generator), "context": torch.randn(1, 5, 192, generator=generator)}
    with torch.no_grad():
        out = model(**inputs)
    return {**inputs, "out": out.contiguous()}


if __name__ == "__main__":
    main(_build, __doc__.splitlines()[0])
