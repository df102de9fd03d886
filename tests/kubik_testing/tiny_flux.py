"""Tiny random-weight FLUX.1-shaped model files, in the layouts ComfyUI users have them.

A real FLUX.1 is a 12 B-parameter transformer plus CLIP-L, T5-XXL and a 16-channel VAE, each its
own file in ComfyUI's model folders. This writes the same files at toy sizes, built on the meta
device from ComfyUI's own classes (so every key name is what Black Forest Labs' and ComfyUI's
files hold) and filled with seeded random values (tiny_checkpoint._random_state_dict):

- ``flux1-dev-tiny.safetensors``: a diffusion model (models/diffusion_models) in BFL's layout
  (``double_blocks.*``, ``single_blocks.*``, ``guidance_in.*``: dev), no key prefix;
- ``flux1-schnell-tiny.safetensors``: the same without ``guidance_in`` (schnell), its keys under
  ``model.diffusion_model.`` as some repacks store them;
- ``clip_l-tiny.safetensors`` and ``t5xxl-tiny.safetensors``: the text encoders as in
  models/text_encoders (``text_model.*`` + ``text_projection.weight``; T5's ``shared`` and
  ``encoder.block.*``);
- ``ae-tiny.safetensors``: the VAE as BFL's ae.safetensors (``encoder.*``, ``decoder.*``, 16
  latent channels, no quant convs);
- ``flux1-dev-tiny-checkpoint.safetensors``: all of it in one file, as ComfyUI's CheckpointSave
  writes a FLUX model (``model.diffusion_model.``, ``text_encoders.clip_l.transformer.``,
  ``text_encoders.t5xxl.transformer.``, ``vae.``).

Sizes: the transformer is 64 wide (2 heads of 32, rotary axes 4+14+14 instead of 16+56+56), 2
double and 2 single blocks; CLIP-L and T5 are 64 wide with 2 layers and their real vocabularies
(49408 and 32128 tokens, so ComfyUI's tokenizers fit); the VAE has 4 levels of 32-64 channels
(8x downsampling like the real one). ComfyUI itself would not load the transformer (it assumes
FLUX.1's 3072 width); kubik reads every width from the header. ComfyUI must not be imported into
the test process, so :func:`build_tiny_flux_files` runs this file in a subprocess (tiny_parts.py,
shared with tiny_sd3.py, which writes the same CLIP-L and VAE).
"""
from __future__ import annotations

from pathlib import Path

from kubik_testing.tiny_parts import (TINY_CLIP_L_CONFIG, comfy_cpu_operations, main, run_builder, tiny_vae,
                                      write_files)

TINY_FLUX_CONFIG = dict(in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=64, hidden_size=64,
                        mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[4, 14, 14],
                        theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[])
TINY_T5_CONFIG = dict(d_ff=128, d_kv=16, d_model=64, num_heads=4, num_layers=2, vocab_size=32128,
                      dense_act_fn="gelu_pytorch_tanh", is_gated_act=True, model_type="t5")

FILES = {"dev": "flux1-dev-tiny.safetensors", "schnell": "flux1-schnell-tiny.safetensors",
         "clip_l": "clip_l-tiny.safetensors", "t5xxl": "t5xxl-tiny.safetensors", "vae": "ae-tiny.safetensors",
         "checkpoint": "flux1-dev-tiny-checkpoint.safetensors", "reference": "flux1-dev-tiny-reference.safetensors"}


def build_tiny_flux_files(folder: Path, comfyui_dir: Path, python: str | None = None, seed: int = 0) -> dict:
    """Write the files of the module docstring into ``folder``; returns {kind: path} (kinds:
    dev, schnell, clip_l, t5xxl, vae, checkpoint, and reference: ComfyUI's FLUX forward pass on
    the dev weights, see _reference)."""
    return run_builder(__file__, folder, FILES, comfyui_dir, python, seed, "FLUX")


def _build(folder: Path, seed: int) -> None:
    import torch

    ops = comfy_cpu_operations()
    import comfy.clip_model
    from comfy.ldm.flux.model import Flux
    from comfy.text_encoders.t5 import T5
    from kubik_testing.tiny_checkpoint import _random_state_dict

    with torch.device("meta"):
        dev = Flux(device="meta", dtype=torch.float16, operations=ops, **TINY_FLUX_CONFIG)
        schnell = Flux(device="meta", dtype=torch.float16, operations=ops,
                       **dict(TINY_FLUX_CONFIG, guidance_embed=False))
        clip_l = comfy.clip_model.CLIPTextModel(TINY_CLIP_L_CONFIG, None, "meta", ops)
        t5 = T5(TINY_T5_CONFIG, None, "meta", ops)
        vae = tiny_vae()
    parts = {
        "dev": _random_state_dict({"": dev}, seed),
        "schnell": _random_state_dict({"model.diffusion_model.": schnell}, seed + 1),
        "clip_l": _random_state_dict({"": clip_l}, seed + 2),
        "t5xxl": _random_state_dict({"": t5}, seed + 3),
        "vae": _random_state_dict({"": vae}, seed + 4),
    }
    # ComfyUI's CheckpointSave of a FLUX model (supported_models.Flux: vae., text_encoders.)
    parts["checkpoint"] = {
        **{f"model.diffusion_model.{k}": v for k, v in parts["dev"].items()},
        **{f"text_encoders.clip_l.transformer.{k}": v for k, v in parts["clip_l"].items()},
        **{f"text_encoders.t5xxl.transformer.{k}": v for k, v in parts["t5xxl"].items()},
        **{f"vae.{k}": v for k, v in parts["vae"].items()},
    }
    parts["reference"] = _reference(parts["dev"], seed)
    write_files(folder, parts, FILES, "FLUX")


def _reference(state: dict, seed: int) -> dict:
    """One forward pass of ComfyUI's own FLUX model with the dev weights, inputs and output: what
    a correct conversion to diffusers' layout must reproduce. Inputs are the packed sequences both
    implementations take (16 latent channels in 2x2 patches, 4x4 patches here; 5 text tokens)."""
    import torch

    import comfy.ops
    from comfy.ldm.flux.model import Flux

    model = Flux(device="cpu", dtype=torch.float32, operations=comfy.ops.disable_weight_init, **TINY_FLUX_CONFIG)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    inputs = {"img": torch.randn(1, 16, 64, generator=generator),
              "img_ids": torch.stack([torch.zeros(4, 4), rows, cols], dim=-1).reshape(1, 16, 3),
              "txt": torch.randn(1, 5, TINY_FLUX_CONFIG["context_in_dim"], generator=generator),
              "txt_ids": torch.zeros(1, 5, 3),
              "timesteps": torch.tensor([0.7]),
              "y": torch.randn(1, TINY_FLUX_CONFIG["vec_in_dim"], generator=generator),
              "guidance": torch.tensor([3.5])}
    with torch.no_grad():
        out = model.forward_orig(**inputs)
    return {**inputs, "out": out.contiguous()}


if __name__ == "__main__":
    main(_build, __doc__.splitlines()[0])
