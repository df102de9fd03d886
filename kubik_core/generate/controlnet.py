"""An SD1.5 ControlNet single file (lllyasviel's ``control_model.*`` layout) as diffusers'
ControlNetModel, offline: the config is read from the file's shapes as for the checkpoint
(kubik_core.checkpoints.sd15.unet_config), the keys converted with diffusers' own single-file converter.
SDXL ControlNets are refused with one line (their single-file configs would be downloaded)."""
from __future__ import annotations

import os
from pathlib import Path

from ..common.safetensors_file import SafetensorsFileError, read_header
from ..checkpoints import CheckpointError
from ..checkpoints.modules import load_strict
from ..checkpoints.sd15 import unet_config as sd15_unet_config

PREFIX = "control_model."


class ControlNetError(ValueError):
    """A ControlNet file kubik generate cannot use; the message names it and the fix."""


def controlnet_config(path: str | os.PathLike) -> dict:
    """diffusers ControlNetModel config of the SD1.5 ControlNet file ``path``, from its header
    alone (so a wrong file is refused before anything loads)."""
    name = Path(path).name
    try:
        header = read_header(path, name)
    except SafetensorsFileError as exc:
        raise ControlNetError(f"--controlnet: {exc}; give a .safetensors ControlNet") from None
    shapes = {key: shape for key, (_, shape) in header.tensors.items()}
    hint = f"{PREFIX}input_hint_block.0.weight"
    attention = next((k for k in shapes if k.startswith(PREFIX) and k.endswith("attn2.to_k.weight")), None)
    if hint not in shapes or attention is None:
        raise ControlNetError(f"--controlnet: {name} is not a ControlNet in lllyasviel's layout "
                              "(control_model.input_hint_block.* missing)")
    if shapes[attention][1] != 768:
        raise ControlNetError(f"--controlnet: {name} is for a model with {shapes[attention][1]}-wide text "
                              "features; kubik generate loads SD1.5 ControlNets (768)")
    try:
        return sd15_unet_config(shapes, PREFIX)
    except (CheckpointError, KeyError, StopIteration) as exc:
        raise ControlNetError(f"--controlnet: {name}: {exc}") from None


def load_controlnet(path: str | os.PathLike):
    """diffusers ControlNetModel (float32) for the SD1.5 ControlNet file ``path``."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    from safetensors.torch import load_file

    config = controlnet_config(path)
    controlnet = ControlNetModel(**config)
    state = {k: v.float() for k, v in load_file(os.fspath(path)).items()}
    try:
        converted = convert_controlnet_checkpoint(state, dict(controlnet.config))
        return load_strict(controlnet, converted, "ControlNet", Path(path).name)
    except CheckpointError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None
