"""What the tiny FLUX.1 and SD3.5 builders (tiny_flux.py, tiny_sd3.py) share.

Both models come as several files ComfyUI users keep apart (a diffusion model, CLIP-L, T5, a
16-channel VAE ...), built with ComfyUI's own classes. ComfyUI must not be imported into the test
process, so each builder runs as a script in a subprocess (:func:`run_builder`, :func:`main`);
inside it, ComfyUI is set to the CPU first (:func:`comfy_cpu_operations`), the VAE both models use
is built from one config (:func:`tiny_vae`), and every file is written atomically with a title
saying what it is (:func:`write_files`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
_REPOSITORY = _TESTS.parent

# CLIP-L at toy width with its real vocabulary (49408 tokens, so ComfyUI's tokenizer fits).
TINY_CLIP_L_CONFIG = dict(hidden_size=64, intermediate_size=128, num_attention_heads=1, num_hidden_layers=2,
                          max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu",
                          layer_norm_eps=1e-5, projection_dim=64, bos_token_id=0, eos_token_id=49407,
                          pad_token_id=1)
# The 16-channel VAE (BFL's ae layout, SD3's too): 4 levels of 32-64 channels, 8x downsampling.
TINY_VAE_DDCONFIG = dict(double_z=True, z_channels=16, resolution=256, in_channels=3, out_ch=3, ch=32,
                         ch_mult=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0)


def run_builder(script: str, folder: Path, names: dict, comfyui_dir: Path, python: str | None, seed: int,
                what: str) -> dict:
    """Run the builder ``script`` (``script FOLDER --seed SEED``) in a subprocess that can import
    ComfyUI (for its model classes), the repository (kubik_core's atomic write) and tests/ (the
    shared random initialisation); returns {kind: path} of the files ``names`` it wrote, or raises
    RuntimeError with its output if it fails."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (Path(comfyui_dir).resolve(), _REPOSITORY,
                                                                          _TESTS)))
    done = subprocess.run([python or sys.executable, script, str(folder), "--seed", str(seed)],
                          cwd=comfyui_dir, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"building the tiny {what} files failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return {kind: folder / name for kind, name in names.items()}


def main(build, description: str) -> None:
    """A builder script's command line: FOLDER [--seed N], then ``build(folder, seed)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.folder, args.seed)


def comfy_cpu_operations():
    """ComfyUI's operations that skip weight initialisation, with ComfyUI set to the CPU first (as
    `main.py --cpu`: nothing here may look for a GPU). Call it before importing ComfyUI's models."""
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ops

    return comfy.ops.disable_weight_init


def tiny_vae():
    """The 16-channel VAE as BFL's ae.safetensors holds it (``encoder.*`` and ``decoder.*`` only,
    no quant convs), built on the caller's device (the meta device in the builders)."""
    import torch
    from comfy.ldm.modules.diffusionmodules.model import Decoder, Encoder

    vae = torch.nn.Module()
    vae.encoder = Encoder(**TINY_VAE_DDCONFIG)
    vae.decoder = Decoder(**TINY_VAE_DDCONFIG)
    return vae


def write_files(folder: Path, states: dict, names: dict, model: str) -> None:
    """Each ``states[kind]`` to ``folder / names[kind]``, atomically, titled as a tiny ``model`` file."""
    from safetensors.torch import save_file

    from kubik_core.common.atomic import atomic_path

    for kind, state in states.items():
        with atomic_path(folder / names[kind]) as tmp:
            save_file(state, str(tmp), metadata={"modelspec.title": f"KubikAI tiny random {model} test file ({kind})"})
