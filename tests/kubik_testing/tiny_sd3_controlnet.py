"""Tiny random-weight SD3/SD3.5 ControlNets for tiny_sd3's models, in the single-file layouts
ComfyUI users keep in models/controlnet (kubik generate's tests). No ComfyUI needed.

- diffusers' layout (InstantX's SD3-Controlnet-Canny/Pose/Tile, TensorArt's SD3.5M ControlNets:
  ``diffusion_pytorch_model.safetensors`` renamed): joint blocks with their own patch embedding,
  context embedder and positions (:func:`write_tiny_sd3_controlnet`);
- Stability AI's SD3.5 Large ControlNets as released (``sd3.5_large_controlnet_blur|canny|depth``,
  :func:`write_tiny_sd35_large_controlnet`): single-stream blocks in the reference code's names
  (``transformer_blocks.N.attn.qkv``, ``attn.proj``, ``mlp.fc1|fc2``, ``adaLN_modulation.1``;
  Stability-AI/sd3.5 dit_embedder.py), diffusers-named time/text embedders (the reference's
  CONTROLNET_MAP), no patch embedding of their own, and a ``control_type`` tensor (blur 0, canny 1,
  depth 2); or the same weights in diffusers' names (``layout="diffusers"``, as Stability's
  stable-diffusion-3.5-large-controlnet-* repositories also ship them).

Sizes follow tiny_sd3.TINY_MMDIT_CONFIG: 128 wide (2 heads of 64), 16 latent channels in 2x2
patches, 192-wide context, 160-wide pooled vector, positions for 16x16 patches. The zero-initialised
outputs get seeded random values too (tiny_checkpoint._random_state_dict), so that the control
picture changes the result.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# diffusers' SD3ControlNetModel at the tiny MMDiT's size (InstantX's layout, one joint block).
TINY_SD3_CONTROLNET_CONFIG = dict(sample_size=32, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=64,
                                  num_attention_heads=2, joint_attention_dim=192, caption_projection_dim=128,
                                  pooled_projection_dim=160, out_channels=16, pos_embed_max_size=16)
# The SD3.5 Large kind (diffusers' convert_sd3_controlnet_to_diffusers.py settings at the tiny size):
# single-stream blocks, the transformer's patch embedding, no text context, the pooled vector kept.
TINY_SD35_LARGE_CONTROLNET_CONFIG = dict(patch_size=2, in_channels=16, num_layers=2, attention_head_dim=64,
                                         num_attention_heads=2, joint_attention_dim=None, caption_projection_dim=128,
                                         pooled_projection_dim=160, out_channels=16, pos_embed_max_size=None,
                                         pos_embed_type=None, use_pos_embed=False,
                                         force_zeros_for_pooled_projection=False)
# diffusers' block names -> Stability's reference names (dit_embedder.py's DismantledBlock).
_TO_STABILITY = {"attn.to_out.0": "attn.proj", "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2",
                 "norm1.linear": "adaLN_modulation.1"}


def _random_controlnet(config: dict, seed: int) -> dict:
    import torch
    from diffusers import SD3ControlNetModel

    from tiny_checkpoint import _random_state_dict

    with torch.device("meta"):
        net = SD3ControlNetModel(**config)
    return _random_state_dict({"": net}, seed)


def _save(path: Path, state: dict, what: str) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"kubik.note": f"KubikAI tiny random {what} test ControlNet"})
    return path


def write_tiny_sd3_controlnet(path: Path, seed: int = 0, **config) -> Path:
    """An SD3 ControlNet in diffusers' layout; ``config`` replaces TINY_SD3_CONTROLNET_CONFIG's
    values (e.g. ``extra_conditioning_channels=1``: an inpainting ControlNet)."""
    return _save(path, _random_controlnet({**TINY_SD3_CONTROLNET_CONFIG, **config}, seed), "SD3 (diffusers layout)")


def write_tiny_sd35_large_controlnet(path: Path, seed: int = 0, control_type: int | None = 1,
                                     layout: str = "stability", **config) -> Path:
    """An SD3.5 Large-kind ControlNet in Stability's released layout (with ``control_type``, None:
    without it) or in diffusers' names (``layout="diffusers"``, no control_type); ``config``
    replaces TINY_SD35_LARGE_CONTROLNET_CONFIG's values."""
    import torch

    state = _random_controlnet({**TINY_SD35_LARGE_CONTROLNET_CONFIG, **config}, seed)
    if layout == "diffusers":
        return _save(path, state, "SD3.5 Large (diffusers layout)")
    stability = {}
    for key, value in state.items():
        match = re.fullmatch(r"(transformer_blocks\.\d+)\.(.+)\.(weight|bias)", key)
        if match is None:
            stability[key] = value
            continue
        block, name, part = match.groups()
        if name == "attn.to_q":       # q, k and v in one projection, in that order
            stability[f"{block}.attn.qkv.{part}"] = torch.cat(
                [state[f"{block}.attn.to_{x}.{part}"] for x in "qkv"]).contiguous()
        elif name not in ("attn.to_k", "attn.to_v"):
            stability[f"{block}.{_TO_STABILITY[name]}.{part}"] = value
    if control_type is not None:
        stability["control_type"] = torch.tensor([control_type], dtype=torch.int32)
    return _save(path, stability, "SD3.5 Large (Stability layout)")
