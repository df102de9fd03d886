"""Which model family a single-file checkpoint holds, and how big its parts are, from its header.

Every command that takes a checkpoint (``kubik generate``, ``kubik lora train``) asks here first,
so a file of another family is refused with one line naming it before anything loads.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .layout import CLIP_G, CLIP_L, SD15_CLIP, UNET, VAE, CheckpointError, prediction_type, read_shapes
from .vae import has_taesd

# The families detect_family tells apart, as a sentence names them.
FAMILY_NAMES = {
    "sd15": "SD1.5", "sdxl": "SDXL", "sd2": "SD2.x", "sd3": "SD3/SD3.5", "flux": "FLUX",
    "unknown_unet": "an unknown UNet model",
    "none": "no Stable Diffusion model (no model.diffusion_model.* tensors)",
}


@dataclass
class CheckpointInfo:
    """What the header says: the family and, per component, its parameter bytes in the file."""

    path: str
    family: str                       # a key of FAMILY_NAMES
    component_bytes: dict             # {"unet": n, "text_encoder": n, "text_encoder_2": n, "vae": n}
    vae_kind: str                     # "kl" or "taesd"
    prediction_type: str
    largest_tensor_bytes: int         # sequential offloading keeps about this much on the GPU


def detect_family(shapes: dict) -> str:
    """The family (a key of FAMILY_NAMES) of the checkpoint whose tensors are ``shapes``."""
    if f"{UNET}label_emb.0.0.weight" in shapes and f"{CLIP_G}token_embedding.weight" in shapes:
        return "sdxl"
    if f"{SD15_CLIP}embeddings.token_embedding.weight" in shapes:
        key = next((k for k in shapes if k.endswith("attn2.to_k.weight") and k.startswith(UNET)), None)
        if key is not None and shapes[key][1] == 768:
            return "sd15"
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in shapes):
        return "flux"
    if any(".joint_blocks." in k or k.startswith("joint_blocks.") for k in shapes):   # bare: a diffusion model file
        return "sd3"
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        return "sd2"
    if any(k.startswith(UNET) for k in shapes):
        return "unknown_unet"
    return "none"


def require_family(family: str, supported: tuple[str, ...], loads: str) -> str:
    """``family`` if it is one of ``supported``, else CheckpointError "the checkpoint holds
    <family>; <loads>" (``loads`` says what the command loads instead)."""
    if family not in supported:
        raise CheckpointError(f"the checkpoint holds {FAMILY_NAMES[family]}; {loads}")
    return family


def inspect_checkpoint(path: str | os.PathLike, flag: str = "--checkpoint") -> CheckpointInfo:
    """Family and component sizes of ``path`` from its header (no tensor is read). ``flag``: the
    option that named the file, for the error of a missing one."""
    shapes = read_shapes(path, flag)
    component_bytes = {"unet": 0, "text_encoder": 0, "text_encoder_2": 0, "vae": 0}
    largest = 0
    for name, shape in shapes.items():
        nbytes = 4 * math.prod(shape)      # as loaded, in float32
        largest = max(largest, nbytes)
        if name.startswith(UNET):
            component_bytes["unet"] += nbytes
        elif name.startswith(VAE):
            component_bytes["vae"] += nbytes
        elif name.startswith(CLIP_G):
            component_bytes["text_encoder_2"] += nbytes
        elif name.startswith((CLIP_L, "cond_stage_model.")):
            component_bytes["text_encoder"] += nbytes
    return CheckpointInfo(os.fspath(path), detect_family(shapes), component_bytes,
                          "taesd" if has_taesd(shapes) else "kl", prediction_type(shapes), largest)
