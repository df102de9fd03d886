"""A tiny random-weight SD1.5 ControlNet that a real ComfyUI loads with core ControlNetLoader.

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(Path(comfyui_dir).resolve()), str(_REPOSITORY))))
    done = subprocess.run([python or sys.executable, __file__, str(path), "--seed", str(seed)],
                          cwd=comfyui_dir, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"building the tiny ControlNet failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return path


def _build(out: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ops
    from comfy.cldm.cldm import ControlNet

    from tiny_checkpoint import TINY_UNET_CONFIG, _random_state_dict

    config = {k: v for k, v in TINY_UNET_CONFIG.items() if k != "out_channels"}
    with torch.device("meta"):
        net = ControlNet(**config, hint_channels=3, device="meta", operations=comfy.ops.disable_weight_init)
    state = _random_state_dict({"control_model.": net}, seed)
    from kubik_core.common.atomic import atomic_path

    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"kubik.note": "KubikAI tiny random SD1.5 test ControlNet"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _build(args.out, args.seed)
