"""A FLUX.1 ControlNet single file as diffusers' FluxControlNetModel, offline.

ComfyUI users keep FLUX ControlNets in models/controlnet. The ones diffusers' FluxControlNetPipeline
runs are in diffusers' layout (InstantX's Canny and Union, Shakker-Labs' Union-Pro and Union-Pro
2.0: ``controlnet_x_embedder``, ``transformer_blocks``, ``single_transformer_blocks``,
``controlnet_blocks``, and for a Union ``controlnet_mode_embedder``), the
``diffusion_pytorch_model.safetensors`` of their repositories renamed. The config is read from the
header's shapes (blocks, widths, guidance embedding, number of modes) instead of a downloaded
config.json, and the model is built on the meta device and compared with the header before any
tensor is read, as controlnet.py does for SD1.5 and SDXL. SD3 ControlNets are refused.

XLabs-AI's FLUX ControlNets (flux-canny/depth/hed-controlnet v1-v3, kept in models/controlnet or
models/xlabs/controlnets) are in Black Forest Labs' layout: ``img_in``, ``txt_in``, ``time_in``,
``vector_in``, ``guidance_in``, a few ``double_blocks``, then ``controlnet_blocks`` (one linear per
double block), ``pos_embed_input`` and ``input_hint_block`` (eight 3x3 convolutions taking the
control picture, in -1..1, down to 16 channels at the latent size). diffusers' FluxControlNetModel
holds the same network when built with ``conditioning_embedding_channels=16``: the double blocks
convert exactly as the FLUX transformer's (diffusers' own converter, checkpoints/flux.py), the
convolutions become its ``input_hint_block`` (conv_in, blocks 0-5, conv_out) and
``pos_embed_input`` its ``controlnet_x_embedder``. With that hint block, FluxControlNetPipeline
passes ``controlnet_blocks_repeat=True`` to the transformer, which adds residual ``i % n`` after
its double block ``i`` (n: the ControlNet's double blocks) -- what x-flux (``index_block % 2``)
and ComfyUI's ControlNetFlux (the residuals repeated over FLUX's 19 double blocks) add.
TheMistoAI's MistoLine_Flux.dev (mistoline_flux.dev_v1.safetensors) is refused. Its file is
BFL-named like XLabs' (TheMistoAI/MistoControlNet-Flux-dev, modules/misto_controlnet.py): three
double and two single blocks, ``controlnet_blocks.N.linear`` and ``single_controlnet_blocks.N.linear``
each followed by a SiLU, and ``input_cond_block.encoder`` (ten convolutions, two of them 1x1, from
the picture in -1..1 down to 16 channels at the latent size). Its maker's sampler (modules/utils.py)
runs the control's single blocks on the text tokens followed by zeros in place of the picture's and
adds each single residual to FLUX's whole sequence, text tokens included (``index % 2`` over FLUX's
38 single blocks; the double residuals cycle ``index % 2`` too, so the third is never used).
diffusers' FluxTransformer2DModel adds single residuals to the image tokens only, so no conversion
to FluxControlNetModel computes what the maker's code does; ComfyUI's core port
(ControlNetFlux(mistoline=True)) differs from it as well (picture tokens into the single blocks,
image-token residuals only, the double residuals cycled over all three).

A Union file (v1 or Pro v1) picks its control type with a mode number (the InstantX and
Shakker-Labs cards: canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6);
Union-Pro 2.0 has no mode embedding ("use it just as a normal ControlNet"), nor does a
single-type file such as InstantX's Canny.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import CheckpointError
from ..checkpoints.flux import FLUX1_WIDTH, rotary_axes
from ..checkpoints.layout import count_indexed
from ..checkpoints.modules import load_strict
from ..checkpoints.parts import shape_of
from .controlnet import FLUX_MARK, SUPPORTED_FLUX, ControlNetError, file_kind, refusal, unmarked

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

# XLabs' hint encoder (ComfyUI's and x-flux's ControlNetFlux.input_hint_block: an nn.Sequential of
# convolutions at even indices, SiLUs between) -> diffusers' ControlNetConditioningEmbedding.
XLABS_HINT_CONVS = {"0": "conv_in", "2": "blocks.0", "4": "blocks.1", "6": "blocks.2", "8": "blocks.3",
                    "10": "blocks.4", "12": "blocks.5", "14": "conv_out"}
XLABS_HINT_CHANNELS = 16      # the hint encoder's output: 16 channels, 2x2 patches = FLUX's 64 inputs


@dataclass(frozen=True)
class FluxControlNetLayout:
    """What the header says: the diffusers config, the file's key layout and how many control modes
    a Union file has."""

    name: str
    config: dict
    layout: str = "diffusers"       # or "xlabs": XLabs-AI's BFL-style keys, converted when loaded

    @property
    def modes(self) -> int:
        return self.config.get("num_mode") or 0


def inspect_flux_controlnet(path: str | os.PathLike, shapes: dict, transformer: dict) -> FluxControlNetLayout:
    """The config of the FLUX ControlNet ``path`` (its header ``shapes``), checked against the FLUX
    ``transformer`` config it will steer. Raises ControlNetError (one line)."""
    name = Path(path).name
    kind = file_kind(shapes)
    if kind is None:
        raise ControlNetError(unmarked(name, shapes, "FLUX.1", f"a FLUX ControlNet (no {FLUX_MARK}, nor XLabs' "
                                       "double_blocks.* with controlnet_blocks.*)", SUPPORTED_FLUX))
    if kind == "flux_mistoline":
        raise ControlNetError(f"--controlnet: {name} is TheMistoAI's MistoLine FLUX ControlNet "
                              "(controlnet_blocks.N.linear), whose maker adds its single-block residuals to the text "
                              "tokens too, which diffusers' FLUX transformer cannot take; run it in ComfyUI with "
                              f"TheMistoAI's MistoControlNet-Flux-dev nodes, or give {SUPPORTED_FLUX}")
    if kind not in ("flux", "flux_xlabs"):
        raise ControlNetError(refusal(name, kind, "FLUX.1"))
    layout = "xlabs" if kind == "flux_xlabs" else "diffusers"
    if layout == "xlabs":
        _refuse_other_xlabs_kinds(shapes, name)
    try:
        config = _xlabs_config(shapes, name) if layout == "xlabs" else _config(shapes, name)
    except (KeyError, CheckpointError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) else exc
        what = "XLabs FLUX ControlNet" if layout == "xlabs" else "FLUX ControlNet"
        raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown {what} layout "
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
    if config["num_layers"] > transformer["num_layers"]:
        raise ControlNetError(f"--controlnet: {name} has {config['num_layers']} double blocks, more than the FLUX "
                              f"model's {transformer['num_layers']}; give a ControlNet trained for this FLUX.1 model")
    found = FluxControlNetLayout(name, config, layout)
    _check_built(found, _xlabs_names(shapes, name) if layout == "xlabs" else shapes)
    return found


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


def _refuse_other_xlabs_kinds(shapes: dict, name: str) -> None:
    """BFL-layout FLUX ControlNets that diffusers' FluxControlNetModel cannot hold, each named."""
    if any(key.startswith(("single_blocks.", "controlnet_single_blocks.")) for key in shapes):
        raise ControlNetError(f"--controlnet: {name} is an XLabs-layout FLUX ControlNet with single blocks, which "
                              "XLabs' releases do not have and diffusers would add without XLabs' repetition; give "
                              f"{SUPPORTED_FLUX}")


def _xlabs_config(shapes: dict, name: str) -> dict:
    """diffusers' FluxControlNetModel config from an XLabs file's BFL-named shapes: the hint
    encoder's 16 output channels in 2x2 patches are what ``pos_embed_input`` (FLUX's 64 inputs) takes."""
    width, in_channels = shape_of(shapes, "img_in.weight", 2)
    head_dim = shape_of(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", 1)[0]
    if width % head_dim:
        raise CheckpointError(f"{head_dim}-wide heads do not divide the width {width}")
    hint = shape_of(shapes, "input_hint_block.14.weight", 4)[0]
    if hint * 4 != shape_of(shapes, "pos_embed_input.weight", 2)[1]:
        raise CheckpointError(f"its hint encoder gives {hint} channels, pos_embed_input takes "
                              f"{shapes['pos_embed_input.weight'][1]} (4 x {XLABS_HINT_CHANNELS} expected)")
    # patch_size: FluxControlNetModel uses it only to cut the hint encoder's map into FLUX's 2x2 patches
    return {"patch_size": 2, "in_channels": in_channels,
            "num_layers": count_indexed(shapes, r"double_blocks\.(\d+)\."), "num_single_layers": 0,
            "attention_head_dim": head_dim, "num_attention_heads": width // head_dim,
            "joint_attention_dim": shape_of(shapes, "txt_in.weight", 2)[1],
            "pooled_projection_dim": shape_of(shapes, "vector_in.in_layer.weight", 2)[1],
            "guidance_embeds": "guidance_in.in_layer.weight" in shapes,
            "axes_dims_rope": rotary_axes(head_dim, name), "conditioning_embedding_channels": hint}


def xlabs_to_diffusers(state: dict) -> dict:
    """An XLabs ControlNet's tensors (or meta stand-ins of its shapes) under diffusers' names.

    The embedders and double blocks go through diffusers' FLUX transformer converter, which also
    insists on a single block and a final layer (an XLabs ControlNet has neither): it gets meta
    stand-ins of both, and what it makes of them is dropped. Keys nothing maps keep their names,
    so that the strict load names them."""
    import torch
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    own, base = {}, {}
    for key, value in state.items():
        group, _, rest = key.partition(".")
        index, _, part = rest.partition(".")
        if group == "controlnet_blocks":
            own[key] = value
        elif group == "pos_embed_input":
            own[f"controlnet_x_embedder.{rest}"] = value
        elif group == "input_hint_block" and index in XLABS_HINT_CONVS and part in ("weight", "bias"):
            own[f"input_hint_block.{XLABS_HINT_CONVS[index]}.{part}"] = value
        else:
            base[key] = value
    meta = {"device": "meta"}
    stand_ins = {"single_blocks.0.linear1.weight": torch.empty(7 * FLUX1_WIDTH, 1, **meta),
                 "single_blocks.0.linear1.bias": torch.empty(7 * FLUX1_WIDTH, **meta),
                 "final_layer.adaLN_modulation.1.weight": torch.empty(2, 1, **meta),
                 "final_layer.adaLN_modulation.1.bias": torch.empty(2, **meta)}
    for key in ("single_blocks.0.modulation.lin", "single_blocks.0.linear2", "final_layer.linear"):
        stand_ins.update({f"{key}.weight": torch.empty(1, 1, **meta), f"{key}.bias": torch.empty(1, **meta)})
    stand_ins.update({f"single_blocks.0.norm.{norm}.scale": torch.empty(1, **meta)
                      for norm in ("query_norm", "key_norm")})
    unread = {**base, **stand_ins}        # the converter pops what it reads: what stays is unknown
    converted = convert_flux_transformer_checkpoint_to_diffusers(unread)
    dropped = ("single_transformer_blocks.", "norm_out.", "proj_out.")
    return {**{k: v for k, v in converted.items() if not k.startswith(dropped)}, **unread, **own}


def _xlabs_names(shapes: dict, name: str) -> dict:
    """The diffusers names and shapes of an XLabs file's tensors (the converter run on meta tensors)."""
    import torch

    try:
        converted = xlabs_to_diffusers({k: torch.empty(shape, device="meta") for k, shape in shapes.items()})
    except KeyError as exc:         # a double block or embedder without one of its tensors
        raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown XLabs FLUX ControlNet layout "
                              f"({str(exc.args[0])[:160]})") from None
    except (RuntimeError, ValueError, IndexError) as exc:      # a tensor of a rank the converter cannot split
        raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown XLabs FLUX ControlNet layout "
                              f"({str(exc).splitlines()[0][:160]})") from None
    return {k: tuple(v.shape) for k, v in converted.items()}


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

    from ..common.safetensors_file import SafetensorsFileError, load_tensors

    controlnet = _on_meta(layout.config)
    try:
        state = {k: v.to(dtype or torch.float32) for k, v in load_tensors(path, layout.name).items()}
    except SafetensorsFileError as exc:     # e.g. cut short since its check
        raise ControlNetError(f"--controlnet: {layout.name}: its tensors cannot be read ({exc.reason})") from None
    if layout.layout == "xlabs":        # the header's names were checked converted (inspect_flux_controlnet)
        state = xlabs_to_diffusers(state)
    try:
        return load_strict(controlnet, state, "ControlNet", layout.name, "FLUX ControlNet", assign=True)
    except CheckpointError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None
