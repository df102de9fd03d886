"""The original (LDM / SGM) key layout of single-file Stable Diffusion checkpoints, read from the
safetensors header alone.

A1111, kohya, ComfyUI's CheckpointSave and CivitAI all store a model as one file whose tensor
names say which part each belongs to. Every loader in this package starts from those names and
shapes (no tensor is read), so a wrong file is refused before anything large is loaded.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..common.safetensors_file import SafetensorsFileError, read_header

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD15_CLIP = "cond_stage_model.transformer.text_model."          # SD1.x: CLIP ViT-L
CLIP_L = "conditioner.embedders.0.transformer.text_model."      # SDXL te1: CLIP ViT-L
CLIP_G = "conditioner.embedders.1.model."                       # SDXL te2: OpenCLIP bigG
TAESD_ENCODER = f"{VAE}taesd_encoder."                           # a TAESD in place of the KL VAE
TAESD_DECODER = f"{VAE}taesd_decoder."


class CheckpointError(ValueError):
    """A checkpoint this package cannot load; the message names what is wrong and the fix."""


def read_shapes(path: str | os.PathLike, flag: str = "--checkpoint") -> dict[str, list[int]]:
    """Tensor name -> shape of the checkpoint ``path``, from its header alone. ``flag`` is the
    command-line option that named the file, for the error of a missing one."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{flag}: no file {Path(path).name!r}; give a .safetensors checkpoint")
    try:
        header = read_header(path, Path(path).name)
    except SafetensorsFileError as exc:
        raise CheckpointError(f"{exc}; the checkpoint must be a .safetensors file") from None
    return {name: shape for name, (_, shape) in header.tensors.items()}


def count_indexed(shapes: dict, pattern: str) -> int:
    """1 + the largest number the regex ``pattern``'s first group matches among the keys (0 if
    none): how many layers or blocks ``...layers.N.`` keys describe."""
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def prediction_type(shapes: dict) -> str:
    """"v_prediction" for the checkpoints that mark it with a ``v_pred`` tensor, else "epsilon"."""
    return "v_prediction" if "v_pred" in shapes else "epsilon"


def unet_original_names(shapes: dict, unet_config: dict) -> dict[str, str]:
    """diffusers module path -> original (LDM) module path for every UNet weight of a file,
    e.g. ``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in``.

    It is diffusers' own conversion (the one the UNet was loaded with) run on the key names
    instead of the tensors, so the two layouts cannot disagree. LoRA files in kohya's original
    layout are written with these names.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    names = {key: key for key in shapes if key.startswith(UNET)}
    converted = convert_ldm_unet_checkpoint(names, unet_config)
    return {new[: -len(".weight")]: old[len(UNET): -len(".weight")]
            for new, old in converted.items() if new.endswith(".weight") and old.endswith(".weight")}
