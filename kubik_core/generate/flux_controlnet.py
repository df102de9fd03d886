"""A FLUX.1 ControlNet single file as diffusers' FluxControlNetModel, offline.

ComfyUI users keep FLUX ControlNets in models/controlnet. The ones diffusers' FluxControlNetPipeline
runs are in diffusers' layout (InstantX's Canny and Union, Shakker-Labs' Union-Pro and Union-Pro
2.0: ``controlnet_x_embedder``, ``transformer_blocks``, ``single_transformer_blocks``,
``controlnet_blocks``, and for a Union ``controlnet_mode_embedder``), the
``diffusion_pytorch_model.safetensors`` of their repositories renamed. The config is read from the
header's shapes (blocks, widths, guidance embedding, number of modes) instead of a downloaded
config.json, and the model is built on the meta device and compared with the header before any
tensor is read, as controlnet.py does for SD1.5 and SDXL. XLabs' FLUX ControlNets (BFL-style
``double_blocks``, ``input_hint_block``) and SD3 ControlNets have other layouts and are refused.

A Union file (v1 or Pro v1) picks its control type with a mode number (the InstantX and
Shakker-Labs cards: canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6);
Union-Pro 2.0 has no mode embedding ("use it just as a normal ControlNet"), nor does a
single-type file such as InstantX's Canny.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import FAMILY_NAMES, CheckpointError
from ..checkpoints.flux import rotary_axes
from ..checkpoints.layout import count_indexed
from ..checkpoints.modules import load_strict
from ..checkpoints.parts import shape_of
from .controlnet import FLUX_MARK, PREFIX, SUPPORTED_FLUX, ControlNetError, file_kind, refusal, sd_family

# The Union (v1) control modes, from the InstantX/FLUX.1-dev-Controlnet-Union and
# Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro model cards.
UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5, "lq": 6}
UNION_MODES_SOURCE = ("HF InstantX/FLUX.1-dev-Controlnet-Union and Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro "
                      "model cards: canny (0), tile (1), depth (2), blur (3), pose (4), gray (5), low quality (6)")
NO_MODE_SOURCE = ("HF Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0 model card: 'Mode embedding is removed' "
                  "... 'You can use it just as a normal ControlNet' "
                  "https://huggingface.co/Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0")
# Control types the Union has no mode for: edge maps of another kind go in as canny.
NEAREST_MODE = {"softedge": "canny", "lineart": "canny", "scribble": "canny"}


@dataclass(frozen=True)
class FluxControlNetLayout:
    """What the header says: the diffusers config and how many control modes a Union file has."""

    name: str
    config: dict

    @property
    def modes(self) -> int:
        return self.config.get("num_mode") or 0


def inspect_flux_controlnet(path: str | os.PathLike, shapes: dict, transformer: dict) -> FluxControlNetLayout:
    """The config of the FLUX ControlNet ``path`` (its header ``shapes``), checked against the FLUX
    ``transformer`` config it will steer. Raises ControlNetError (one line)."""
    name = Path(path).name
    kind = file_kind(shapes)
    if kind is None:
        family = sd_family(shapes)[0] or sd_family(shapes, PREFIX)[0]
        if family is not None:
            raise ControlNetError(f"--controlnet: {name} is an {FAMILY_NAMES.get(family, family)} ControlNet but the "
                                  f"checkpoint is FLUX.1; give {SUPPORTED_FLUX}")
        raise ControlNetError(f"--controlnet: {name} is not a FLUX ControlNet (no {FLUX_MARK}); give {SUPPORTED_FLUX}")
    if kind != "flux":
        raise ControlNetError(refusal(name, kind, "FLUX.1"))
    try:
        config = _config(shapes, name)
    except (KeyError, CheckpointError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) else exc
        raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown FLUX ControlNet layout "
                              f"({str(detail)[:160]})") from None
    width = config["num_attention_heads"] * config["attention_head_dim"]
    model_width = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    if width != model_width or config["in_channels"] != transformer["in_channels"]:
        raise ControlNetError(f"--controlnet: {name} is {width} wide with {config['in_channels']} input channels but "
                              f"the FLUX model is {model_width} wide with {transformer['in_channels']}; give a "
                              "ControlNet trained for this FLUX.1 model")
    text = (config["joint_attention_dim"], config["pooled_projection_dim"])
    model_text = (transformer["joint_attention_dim"], transformer["pooled_projection_dim"])
    if text != model_text:
        raise ControlNetError(f"--controlnet: {name} reads {text[0]}-wide T5 and {text[1]}-wide CLIP features but "
                              f"the FLUX model takes {model_text[0]} and {model_text[1]}; give a ControlNet trained "
                              "for this FLUX.1 model")
    layout = FluxControlNetLayout(name, config)
    _check_built(layout, shapes)
    return layout


def _config(shapes: dict, name: str) -> dict:
    """diffusers' FluxControlNetModel config from the diffusers-named shapes."""
    width, in_channels = shape_of(shapes, FLUX_MARK, 2)
    head_dim = shape_of(shapes, "transformer_blocks.0.attn.norm_q.weight", 1)[0]
    if width % head_dim:
        raise CheckpointError(f"{head_dim}-wide heads do not divide the width {width}")
    config = {"patch_size": 1, "in_channels": in_channels,
              "num_layers": count_indexed(shapes, r"transformer_blocks\.(\d+)\."),
              "num_single_layers": count_indexed(shapes, r"single_transformer_blocks\.(\d+)\."),
              "attention_head_dim": head_dim, "num_attention_heads": width // head_dim,
              "joint_attention_dim": shape_of(shapes, "context_embedder.weight", 2)[1],
              "pooled_projection_dim": shape_of(shapes, "time_text_embed.text_embedder.linear_1.weight", 2)[1],
              "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
              "axes_dims_rope": rotary_axes(head_dim, name)}
    if "controlnet_mode_embedder.weight" in shapes:
        config["num_mode"] = shape_of(shapes, "controlnet_mode_embedder.weight", 2)[0]
    return config


def _check_built(layout: FluxControlNetLayout, shapes: dict) -> None:
    """The config's model has exactly the file's tensors (built on the meta device)."""
    from ..common.weights import WeightsFileError, check_matches

    probe = _on_meta(layout.config)
    try:
        check_matches(probe, shapes, layout.name)
    except WeightsFileError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None


def _on_meta(config: dict):
    """FluxControlNetModel built on the meta device, without the FutureWarning diffusers' own
    class raises about its rotary embedding's import path (nothing a user can act on)."""
    import warnings

    import torch
    from diffusers import FluxControlNetModel

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", FutureWarning)
        return FluxControlNetModel(**config)


def control_mode(layout: FluxControlNetLayout, control_type: str) -> tuple[int | None, str]:
    """The Union mode number for ``control_type`` (None for a file without modes) and why."""
    if not layout.modes:
        return None, f"{layout.name} has no mode embedding (Union-Pro 2.0 or a single-type ControlNet): no mode"
    mode_name = NEAREST_MODE.get(control_type, control_type)
    mode = UNION_MODES.get(mode_name)
    if mode is None or mode >= layout.modes:
        raise ControlNetError(f"--control-type {control_type}: {layout.name} is a Union ControlNet with "
                              f"{layout.modes} modes and none for {control_type}; give one of "
                              f"{', '.join(k for k, v in UNION_MODES.items() if v < layout.modes)}")
    why = f"{layout.name} is a Union ControlNet: {control_type} is its mode {mode}"
    if mode_name != control_type:
        why = f"{layout.name} is a Union ControlNet without a {control_type} mode: the nearest, {mode_name} ({mode})"
    return mode, why


def load_flux_controlnet(path: str | os.PathLike, layout: FluxControlNetLayout, dtype=None):
    """diffusers FluxControlNetModel (``dtype``: float32 by default) with the file's tensors."""
    import torch
    from safetensors.torch import load_file

    controlnet = _on_meta(layout.config)
    try:
        state = {k: v.to(dtype or torch.float32) for k, v in load_file(os.fspath(path)).items()}
    except (OSError, RuntimeError, ValueError) as exc:
        raise ControlNetError(f"--controlnet: {layout.name}: its tensors cannot be read "
                              f"({str(exc).splitlines()[0][:160]})") from None
    try:
        return load_strict(controlnet, state, "ControlNet", layout.name, "FLUX ControlNet", assign=True)
    except CheckpointError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None
