"""Tiny random-weight ControlNets: an SD1.5 one that a real ComfyUI loads with core ControlNetLoader,
SDXL ones for the tiny SDXL checkpoint in both single-file layouts, and FLUX.1 ones in diffusers'
layout and in XLabs-AI's (with ComfyUI's computation on it) for tiny_flux's model (kubik generate's tests).

The ControlNet template (workflows/api/Kubik ControlNet.json) is queued on the CPU by the browser
tests; a real ControlNet is 700 MB to 1.4 GB. This builds ComfyUI's own ``comfy.cldm.cldm.ControlNet``
from the tiny SD1.5 UNet config of tiny_checkpoint.py (so its control outputs fit that UNet's
blocks), with a 3-channel hint input, in lllyasviel's original key layout (``control_model.*``,
``input_hint_block``, ``zero_convs``, ``middle_block_out``), which ComfyUI's
``load_controlnet_state_dict`` detects as an SD1.5 ControlNet through its UNet detection.
The weights are seeded random values (tiny_checkpoint._random_state_dict); ComfyUI must not be
imported into the test process, so :func:`build_tiny_sd15_controlnet` runs this file in a subprocess.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_tiny_sd15_controlnet(path: Path, comfyui_dir: Path, python: str | None = None, seed: int = 0) -> Path:
    """Write the ControlNet to ``path`` (atomically) with ComfyUI's classes; returns ``path``."""
    return _run_builder(path, comfyui_dir, python, seed, "sd15")


def build_tiny_sdxl_controlnet(path: Path, comfyui_dir: Path, python: str | None = None, seed: int = 0) -> Path:
    """An SDXL ControlNet for tiny_checkpoint's tiny SDXL UNet in the original layout without a
    prefix (``input_hint_block``, ``label_emb``, ``zero_convs`` ..., as ComfyUI's loader accepts
    it beside ``control_model.*``), built with ComfyUI's classes; returns ``path``."""
    return _run_builder(path, comfyui_dir, python, seed, "sdxl")


def write_tiny_sdxl_diffusers_controlnet(path: Path, seed: int = 0) -> Path:
    """An SDXL ControlNet for the tiny SDXL UNet in diffusers' layout saved as one file (as users
    keep diffusers/controlnet-canny-sdxl-1.0's diffusion_pytorch_model.safetensors), built with
    diffusers' ControlNetModel from the UNet's config (TINY_SDXL_UNET_CONFIG in diffusers' terms:
    three 320-channel levels of two res blocks, transformer depths 0/1/2, 2 in the middle,
    64-channel heads, 2048-wide text, 2816-wide size embedding). No ComfyUI needed."""
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from tiny_checkpoint import _random_state_dict

    with torch.device("meta"):
        net = ControlNetModel(
            block_out_channels=(320, 320, 320), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            transformer_layers_per_block=(1, 1, 2), attention_head_dim=(5, 5, 5), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_random_state_dict({"": net}, seed), str(path),
              metadata={"kubik.note": "KubikAI tiny random SDXL test ControlNet (diffusers layout)"})
    return path


# diffusers' FluxControlNetModel at the size of tiny_flux.TINY_FLUX_CONFIG: 64 wide (2 heads of 32,
# rotary axes 4+14+14), 16 latent channels in 2x2 patches, 64-wide T5 and CLIP-L, guidance embedded.
TINY_FLUX_CONTROLNET_CONFIG = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                   attention_head_dim=32, num_attention_heads=2, joint_attention_dim=64,
                                   pooled_projection_dim=64, guidance_embeds=True, axes_dims_rope=(4, 14, 14))


def write_tiny_flux_controlnet(path: Path, seed: int = 0, **config) -> Path:
    """A FLUX.1 ControlNet for tiny_flux's tiny FLUX in diffusers' layout saved as one file (as users
    keep InstantX's or Shakker-Labs' diffusion_pytorch_model.safetensors), built with diffusers'
    FluxControlNetModel; ``config`` replaces TINY_FLUX_CONTROLNET_CONFIG's values (num_mode=10: an
    InstantX Union file). Its zero-initialised outputs get random values too, so that the control
    picture changes the result. No ComfyUI needed."""
    import torch
    from diffusers import FluxControlNetModel
    from safetensors.torch import save_file

    from tiny_checkpoint import _random_state_dict

    with torch.device("meta"):
        net = FluxControlNetModel(**{**TINY_FLUX_CONTROLNET_CONFIG, **config})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_random_state_dict({"": net}, seed), str(path),
              metadata={"kubik.note": "KubikAI tiny random FLUX.1 test ControlNet (diffusers layout)"})
    return path


# XLabs-AI's FLUX ControlNets (flux-canny/depth/hed-controlnet-v3) at tiny_flux's sizes: ComfyUI's
# ControlNetFlux (x-flux's model) with 2 double blocks and no single blocks, as XLabs trains them.
TINY_XLABS_DOUBLE_BLOCKS = 2
# The FLUX model of the reference pass: 4 double blocks, so that the 2 residuals repeat (0, 1, 0, 1).
TINY_XLABS_REFERENCE_DOUBLE_BLOCKS = 4


def build_tiny_xlabs_controlnet(path: Path, comfyui_dir: Path, python: str | None = None,
                                seed: int = 0) -> tuple[Path, Path]:
    """An XLabs-layout FLUX ControlNet for tiny_flux's model (BFL keys: ``double_blocks``,
    ``controlnet_blocks``, ``pos_embed_input``, ``input_hint_block``), built with ComfyUI's own
    ``comfy.ldm.flux.controlnet.ControlNetFlux``, and beside it ``<stem>-reference.safetensors``:
    ComfyUI's computation on it (see _xlabs_reference). Returns (ControlNet, reference)."""
    _run_builder(path, comfyui_dir, python, seed, "xlabs")
    return Path(path), _xlabs_reference_path(Path(path))


def _xlabs_reference_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}-reference.safetensors")


def _run_builder(path: Path, comfyui_dir: Path, python: str | None, seed: int, family: str) -> Path:
    """Build in a subprocess. The single-file families are built once per test run for each seed
    (built_once.py: later callers get a hard link to the same file); XLabs' writes a reference
    file beside its ControlNet, so it is built where it is asked for (one fixture wants it)."""
    path = Path(path)
    python = python or sys.executable
    comfyui_dir = Path(comfyui_dir).resolve()

    def build(target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(comfyui_dir), str(_REPOSITORY),
                                                           str(_REPOSITORY / "tests"))))
        done = subprocess.run([python, __file__, str(target), "--seed", str(seed), "--family", family],
                              cwd=comfyui_dir, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"building the tiny ControlNet failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")

    if family == "xlabs":
        build(path)
        return path
    from kubik_testing.built_once import place

    return place(("tiny_controlnet", family, seed, python, str(comfyui_dir)), path, build)


def _build(out: Path, seed: int, family: str) -> None:
    import torch
    from safetensors.torch import save_file

    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ops
    from comfy.cldm.cldm import ControlNet

    if family == "xlabs":
        _build_xlabs(out, seed)
        return

    from tiny_checkpoint import TINY_SDXL_UNET_CONFIG, TINY_UNET_CONFIG, _random_state_dict

    unet = TINY_SDXL_UNET_CONFIG if family == "sdxl" else TINY_UNET_CONFIG
    config = {k: v for k, v in unet.items() if k != "out_channels"}
    with torch.device("meta"):
        net = ControlNet(**config, hint_channels=3, device="meta", operations=comfy.ops.disable_weight_init)
    state = _random_state_dict({"" if family == "sdxl" else "control_model.": net}, seed)
    from kubik_core.common.atomic import atomic_path

    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"kubik.note": f"KubikAI tiny random {family} test ControlNet"})


def _build_xlabs(out: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    import comfy.ops
    from comfy.ldm.flux.controlnet import ControlNetFlux
    from kubik_testing.tiny_flux import TINY_FLUX_CONFIG

    from kubik_core.common.atomic import atomic_path
    from tiny_checkpoint import _random_state_dict

    config = dict(TINY_FLUX_CONFIG, depth=TINY_XLABS_DOUBLE_BLOCKS, depth_single_blocks=0)
    with torch.device("meta"):
        net = ControlNetFlux(device="meta", dtype=torch.float32, operations=comfy.ops.disable_weight_init, **config)
    state = _with_random_biases(_random_state_dict({"": net}, seed), seed)
    reference = _xlabs_reference(state, seed)
    for target, tensors, title in ((out, state, "XLabs-layout FLUX ControlNet"),
                                   (_xlabs_reference_path(out), reference, "XLabs ControlNet reference pass")):
        with atomic_path(target) as tmp:
            save_file(tensors, str(tmp), metadata={"kubik.note": f"KubikAI tiny random {title}"})


def _with_random_biases(state: dict, seed: int) -> dict:
    """_random_state_dict's zero biases and unit norm scales made random too, so that a bias or
    scale loaded into the wrong place changes the reference computation."""
    import torch

    generator = torch.Generator().manual_seed(seed + 100)
    return {k: v + 0.1 * torch.randn(v.shape, generator=generator) if v.dim() == 1 else v for k, v in state.items()}


def _xlabs_reference(controlnet_state: dict, seed: int) -> dict:
    """ComfyUI's own XLabs computation, inputs and outputs: its ControlNetFlux on a control picture
    (``hint``, 0..1 as ComfyUI passes it) and a latent, then a FLUX model of 4 double blocks and 1
    single block (``model.*``, random weights) stepping with those residuals at strength
    ``strength`` (ComfyUI's ControlNet multiplies them so). ``out`` is the model's output with them,
    ``plain`` without; ``control.N`` the ControlNet's residual N."""
    import torch

    import comfy.ops
    from comfy.ldm.flux.controlnet import ControlNetFlux
    from comfy.ldm.flux.model import Flux
    from kubik_testing.tiny_flux import TINY_FLUX_CONFIG

    from tiny_checkpoint import _random_state_dict

    ops = comfy.ops.disable_weight_init
    controlnet = ControlNetFlux(device="cpu", dtype=torch.float32, operations=ops,
                                **dict(TINY_FLUX_CONFIG, depth=TINY_XLABS_DOUBLE_BLOCKS, depth_single_blocks=0))
    controlnet.load_state_dict(controlnet_state)
    main = dict(TINY_FLUX_CONFIG, depth=TINY_XLABS_REFERENCE_DOUBLE_BLOCKS, depth_single_blocks=1)
    with torch.device("meta"):
        shape = Flux(device="meta", dtype=torch.float32, operations=ops, **main)
    model_state = _with_random_biases(_random_state_dict({"": shape}, seed + 1), seed + 1)
    model = Flux(device="cpu", dtype=torch.float32, operations=ops, **main)
    model.load_state_dict(model_state)
    generator = torch.Generator().manual_seed(seed)
    inputs = {"x": torch.randn(1, 16, 8, 8, generator=generator), "timesteps": torch.tensor([0.7]),
              "context": torch.randn(1, 5, TINY_FLUX_CONFIG["context_in_dim"], generator=generator),
              "y": torch.randn(1, TINY_FLUX_CONFIG["vec_in_dim"], generator=generator),
              "guidance": torch.tensor([3.5]), "hint": torch.rand(1, 3, 64, 64, generator=generator),
              "strength": torch.tensor([0.6])}
    with torch.no_grad():
        control = controlnet(inputs["x"], inputs["timesteps"], inputs["context"], y=inputs["y"],
                             guidance=inputs["guidance"], hint=inputs["hint"])
        # as ComfyUI's ControlNet.control_merge hands them on: scaled, no single-block residuals
        scaled = {"input": [residual * inputs["strength"] for residual in control["input"]], "output": []}
        common = dict(x=inputs["x"], timestep=inputs["timesteps"], context=inputs["context"], y=inputs["y"],
                      guidance=inputs["guidance"])
        out, plain = model(**common, control=scaled), model(**common)
    return {**inputs, **{f"model.{k}": v for k, v in model_state.items()},
            **{f"control.{i}": r.contiguous() for i, r in enumerate(control["input"][:TINY_XLABS_DOUBLE_BLOCKS])},
            "out": out.contiguous(), "plain": plain.contiguous()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", choices=("sd15", "sdxl", "xlabs"), default="sd15")
    args = parser.parse_args()
    _build(args.out, args.seed, args.family)
