"""SD3 / SD3.5 ControlNet single files as diffusers' SD3ControlNetModel, offline.

ComfyUI users keep two kinds in models/controlnet, both told by ``pos_embed_input.proj.weight``:

- diffusers' layout (InstantX's SD3-Controlnet-Canny/Pose/Tile for SD3 Medium, TensorArt's
  SD3.5M ControlNets: the ``diffusion_pytorch_model.safetensors`` of their repositories renamed):
  joint blocks with their own patch embedding (``pos_embed``), positions and context embedder;
  trained with a zero pooled vector and the VAE latent without its shift (diffusers'
  ``force_zeros_for_pooled_projection``, ComfyUI's load_controlnet_mmdit).
- Stability AI's SD3.5 Large ControlNets (``sd3.5_large_controlnet_blur|canny|depth``, 8B):
  single-stream blocks in the reference code's names (``transformer_blocks.N.attn.qkv``,
  ``attn.proj``, ``mlp.fc1|fc2``, ``adaLN_modulation.1``), no patch embedding (they use the
  MMDiT's, which diffusers' pipeline copies in), the pooled vector kept, and a ``control_type``
  tensor (blur 0, canny 1, depth 2). The names are converted as diffusers'
  convert_sd3_controlnet_to_diffusers.py does (q, k, v split from qkv); the same weights in
  diffusers' names (Stability's stable-diffusion-3.5-large-controlnet-* repositories) load as they are.

The config is read from the header's shapes, the model built on the meta device and compared with
the file's tensors before any is read, and its widths checked against the MMDiT it will steer, so
every problem is one line. Refused, in one line: the SD3.5 2B-style embedder (square vector
embedding stacked on the MMDiT's, blocks fed in parallel: ComfyUI's ``double_y_emb``), whose
forward diffusers' SD3ControlNetModel does not have.

Inpainting ControlNets (alimama-creative/SD3-Controlnet-Inpainting, diffusers' layout with one extra
input channel: 17 = the VAE latent of the masked picture + the mask) run with ``--mask IMG`` through
diffusers' StableDiffusion3ControlNetInpaintingPipeline: the control picture is the picture to
repaint, the mask is read as ComfyUI and diffusers read masks (white = repaint, black = keep;
grey is split at half; in a picture with transparency, transparent = repaint, as ComfyUI's
LoadImage makes its MASK), scaled to the control picture's size. The pipeline gives the ControlNet the
latent of the picture with the area to repaint blacked out, and the mask; the whole picture is
sampled from noise under its guidance (no latent blending: the kept area is redrawn, not pasted
back). A mask goes only with such a ControlNet, and such a ControlNet only with a mask
(check_mask), each refusal one line naming the fix.

The control picture goes in as each maker's code gives it: [-1, 1] for diffusers-layout files and
Stability's blur; Stability's canny as its reference (Stability-AI/sd3.5 sd3_infer.py, also
diffusers' SD3.5 ControlNet PR) ``x * 127.5 + 0.5``; Stability's depth inverted (``1 - x`` before
the [-1, 1] scaling), as ComfyUI's load_controlnet_sd35 does: that ControlNet was trained on DepthFM
maps drawn near-dark (the reference's inputs/depth.png), ComfyUI's depth preprocessors draw near
white.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import FAMILY_NAMES, CheckpointError
from ..checkpoints.layout import count_indexed
from ..checkpoints.modules import load_strict
from ..checkpoints.parts import shape_of
from ..checkpoints.sd3 import HEAD_WIDTH
from ..common.pictures import read_picture
from .controlnet import SD3_MARK, ControlNetError, file_kind, refusal, unmarked

SUPPORTED_SD3 = ("an SD3/SD3.5 ControlNet: InstantX's SD3 or TensorArt's SD3.5M ControlNets (diffusers' layout), "
                 "or Stability's SD3.5 Large sd3.5_large_controlnet_blur|canny|depth")
# Stability's control_type tensor (dit_embedder.py: "blur = 0, canny = 1, depth = 2"). The blur
# ControlNet serves tiled upscaling (its card): kubik's "tile" control type.
STABILITY_TYPES = {0: "tile", 1: "canny", 2: "depth"}
STABILITY_BLOCK = {"attn.proj": "attn.to_out.0", "mlp.fc1": "ff.net.0.proj", "mlp.fc2": "ff.net.2",
                   "adaLN_modulation.1": "norm1.linear"}
UNUSED_STABILITY = ("control_type", "pos_embed.proj.weight", "pos_embed.proj.bias")   # not model weights
SD3_NAME = FAMILY_NAMES["sd3"]


@dataclass(frozen=True)
class SD3ControlNetLayout:
    """What the header says: the key layout, the diffusers config and the control type the file names."""

    name: str
    layout: str                 # "diffusers" (joint blocks), "stability" (SD3.5 Large, reference names),
    #                             "diffusers_large" (SD3.5 Large in diffusers' names)
    config: dict
    file_type: str | None = None   # Stability's control_type as a kubik control type

    @property
    def large(self) -> bool:
        """The SD3.5 Large kind (single-stream blocks on the MMDiT's patch embedding)."""
        return self.layout != "diffusers"

    @property
    def inpainting(self) -> bool:
        """An inpainting ControlNet: one input channel more than the latent (the mask)."""
        return self.layout == "diffusers" and self.config.get("extra_conditioning_channels", 0) == 1


def inspect_sd3_controlnet(path: str | os.PathLike, shapes: dict, transformer: dict,
                           model: str = SD3_NAME) -> SD3ControlNetLayout:
    """The layout and config of the SD3 ControlNet ``path`` (its header ``shapes``), checked against
    the MMDiT ``transformer`` config (checkpoints.sd3.transformer_config) of ``model`` (what the
    checkpoint is, for the messages). Raises ControlNetError (one line)."""
    name = Path(path).name
    kind = file_kind(shapes)
    if kind is None:
        raise ControlNetError(unmarked(name, shapes, SD3_NAME, f"an SD3 ControlNet (no {SD3_MARK})", SUPPORTED_SD3))
    if kind != "sd3":
        raise ControlNetError(refusal(name, kind, SD3_NAME))
    layout = _layout(shapes, name)
    try:
        config = _large_config(shapes) if layout != "diffusers" else _joint_config(shapes)
    except (KeyError, CheckpointError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) else exc
        raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown SD3 ControlNet layout "
                              f"({str(detail)[:160]})") from None
    _check_widths(name, config, transformer, model)
    file_type = _stability_type(path, shapes, name) if layout == "stability" else None
    result = SD3ControlNetLayout(name, layout, config, file_type)
    _check_built(result, _diffusers_names(shapes, result))
    return result


def _layout(shapes: dict, name: str) -> str:
    if "transformer_blocks.0.adaLN_modulation.1.weight" in shapes:
        text = shapes.get("time_text_embed.text_embedder.linear_1.weight", ())
        if len(text) == 2 and text[0] == text[1]:
            raise ControlNetError(f"--controlnet: {name} is an SD3.5 ControlNet of the 2B kind (a square vector "
                                  "embedding stacked on the MMDiT's, blocks fed in parallel), which diffusers' "
                                  f"SD3ControlNetModel cannot run; give {SUPPORTED_SD3}")
        return "stability"
    if "context_embedder.weight" in shapes:
        return "diffusers"
    if "transformer_blocks.0.norm1.linear.weight" in shapes:
        return "diffusers_large"
    raise ControlNetError(f"--controlnet: {name}: an incomplete or unknown SD3 ControlNet layout (no "
                          f"transformer_blocks.0 of a known kind); give {SUPPORTED_SD3}")


def _patch_input(shapes: dict) -> tuple[int, int, int]:
    """(width, input channels, patch size) of the control picture's patch embedding."""
    width, channels, patch, patch_w = shape_of(shapes, "pos_embed_input.proj.weight", 4)
    if patch != patch_w or width % HEAD_WIDTH:
        raise CheckpointError(f"pos_embed_input is {width} wide in {patch}x{patch_w} patches; SD3 takes square "
                              f"patches and widths in heads of {HEAD_WIDTH}")
    return width, channels, patch


def _layers(shapes: dict) -> int:
    layers = count_indexed(shapes, r"transformer_blocks\.(\d+)\.")
    if not layers:
        raise KeyError("transformer_blocks.0")
    return layers


def _joint_config(shapes: dict) -> dict:
    """diffusers' SD3ControlNetModel config of a diffusers-layout file (InstantX, TensorArt)."""
    width, control_channels, patch = _patch_input(shapes)
    in_channels = shape_of(shapes, "pos_embed.proj.weight", 4)[1]
    caption, joint = shape_of(shapes, "context_embedder.weight", 2)
    layers = _layers(shapes)
    positions = shapes.get("pos_embed.pos_embed")
    side = None
    if positions is not None:
        side = math.isqrt(positions[1]) if len(positions) == 3 and positions[1] > 0 else 0
        if not side or side * side != positions[1] or positions[2] != width:
            raise CheckpointError(f"pos_embed.pos_embed {list(positions)} is no square position table {width} wide")
    return {"sample_size": 128, "patch_size": patch, "in_channels": in_channels, "num_layers": layers,
            "attention_head_dim": HEAD_WIDTH, "num_attention_heads": width // HEAD_WIDTH,
            "joint_attention_dim": joint, "caption_projection_dim": caption,
            "pooled_projection_dim": shape_of(shapes, "time_text_embed.text_embedder.linear_1.weight", 2)[1],
            "out_channels": in_channels, "pos_embed_max_size": side,
            "extra_conditioning_channels": control_channels - in_channels,
            "dual_attention_layers": tuple(i for i in range(layers)
                                           if f"transformer_blocks.{i}.attn2.to_q.weight" in shapes),
            "qk_norm": "rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in shapes else None}


def _large_config(shapes: dict) -> dict:
    """The SD3.5 Large kind's config (diffusers' convert_sd3_controlnet_to_diffusers.py settings)."""
    width, control_channels, patch = _patch_input(shapes)
    return {"sample_size": 128, "patch_size": patch, "in_channels": control_channels,
            "num_layers": _layers(shapes), "attention_head_dim": HEAD_WIDTH,
            "num_attention_heads": width // HEAD_WIDTH, "joint_attention_dim": None, "caption_projection_dim": width,
            "pooled_projection_dim": shape_of(shapes, "time_text_embed.text_embedder.linear_1.weight", 2)[1],
            "out_channels": control_channels, "pos_embed_max_size": None, "pos_embed_type": None,
            "use_pos_embed": False, "force_zeros_for_pooled_projection": False}


def _check_widths(name: str, config: dict, transformer: dict, model: str) -> None:
    """The ControlNet fits the MMDiT: width, latent channels, patches, pooled and context widths."""
    width = config["num_attention_heads"] * HEAD_WIDTH
    model_width = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    channels = config["in_channels"] + config.get("extra_conditioning_channels", 0)
    fix = f"give a ControlNet trained for {model}"
    # an inpainting ControlNet's one extra channel is the mask (the rest is the latent)
    latent = channels - 1 if channels == transformer["in_channels"] + 1 == config["in_channels"] + 1 else channels
    if width != model_width or {latent, config["in_channels"]} != {transformer["in_channels"]} or \
            config["patch_size"] != transformer["patch_size"]:
        raise ControlNetError(f"--controlnet: {name} is {width} wide with {channels} input channels in "
                              f"{config['patch_size']}x{config['patch_size']} patches but the MMDiT is {model_width} "
                              f"wide with {transformer['in_channels']} in {transformer['patch_size']}x"
                              f"{transformer['patch_size']}; {fix} (SD3.5 Large ControlNets need SD3.5 Large, "
                              "InstantX's SD3 Medium or SD3.5 Medium)")
    joint = config["joint_attention_dim"]
    if config["pooled_projection_dim"] != transformer["pooled_projection_dim"] or \
            (joint is not None and joint != transformer["joint_attention_dim"]):
        raise ControlNetError(f"--controlnet: {name} reads {joint or 'no'} text context and a "
                              f"{config['pooled_projection_dim']}-wide pooled vector but the MMDiT takes "
                              f"{transformer['joint_attention_dim']} and {transformer['pooled_projection_dim']}; {fix}")


def _stability_type(path, shapes: dict, name: str) -> str | None:
    """The control type a Stability file names in its ``control_type`` tensor (None: no tensor)."""
    shape = shapes.get("control_type")
    if shape is None:
        return None
    if math.prod(shape) != 1:
        raise ControlNetError(f"--controlnet: {name}: its control_type tensor has shape {list(shape)}, not one number "
                              "(blur 0, canny 1, depth 2)")
    from ..common.safetensors_file import SafetensorsFileError, open_safetensors

    try:
        with open_safetensors(path, name) as handle:
            value = float(handle.get_tensor("control_type").reshape(()).item())
    except SafetensorsFileError as exc:
        raise ControlNetError(f"--controlnet: {name}: its tensors cannot be read ({exc.reason})") from None
    except Exception as exc:    # safetensors' own error type for a tensor it cannot read: no OSError
        raise ControlNetError(f"--controlnet: {name}: its control_type tensor cannot be read "
                              f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    if not math.isfinite(value) or round(value) not in STABILITY_TYPES:
        raise ControlNetError(f"--controlnet: {name}: control_type {value:g} is none of blur (0), canny (1), "
                              "depth (2); give Stability's sd3.5_large_controlnet_* file as released")
    return STABILITY_TYPES[round(value)]


def _from_stability(state: dict, split) -> dict:
    """A Stability-layout state (tensors, or shapes with ``split`` giving the three parts) under
    diffusers' names; names it does not know stay, for the strict check to report."""
    converted = {}
    for key, value in state.items():
        if key in UNUSED_STABILITY:
            continue
        match = re.fullmatch(r"(transformer_blocks\.\d+)\.(.+)\.(weight|bias)", key)
        if match is None:
            converted[key] = value
            continue
        block, name, part = match.groups()
        if name == "attn.qkv":
            for which, piece in zip(("to_q", "to_k", "to_v"), split(value)):
                converted[f"{block}.attn.{which}.{part}"] = piece
        else:
            converted[f"{block}.{STABILITY_BLOCK.get(name, name)}.{part}"] = value
    return converted


def _split_shape(shape: tuple) -> list[tuple]:
    return [(shape[0] // 3, *shape[1:])] * 3 if shape and shape[0] % 3 == 0 else [shape] * 3


def _split_tensor(tensor) -> tuple:
    return tensor.chunk(3, dim=0)


def _diffusers_names(shapes: dict, layout: SD3ControlNetLayout) -> dict:
    return _from_stability(shapes, _split_shape) if layout.layout == "stability" else shapes


def _on_meta(config: dict):
    import torch
    from diffusers import SD3ControlNetModel

    with torch.device("meta"):
        return SD3ControlNetModel(**config)


def _check_built(layout: SD3ControlNetLayout, shapes: dict) -> None:
    """The config's model has exactly the file's tensors (built on the meta device)."""
    from ..common.weights import WeightsFileError, check_matches

    try:
        probe = _on_meta(layout.config)
    except (ValueError, RuntimeError, TypeError) as exc:     # a config diffusers cannot build
        raise ControlNetError(f"--controlnet: {layout.name}: an incomplete or unknown SD3 ControlNet layout "
                              f"({str(exc).splitlines()[0][:160]})") from None
    try:
        check_matches(probe, shapes, layout.name)
    except WeightsFileError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None


def control_type_for(layout: SD3ControlNetLayout, requested: str) -> str:
    """The control type to advise for: the one a Stability file names (``requested`` must be auto
    or the same), else ``requested``."""
    if layout.inpainting and requested != "auto":
        raise ControlNetError(f"--control-type {requested}: {layout.name} is an inpainting ControlNet (it reads the "
                              "picture to repaint and --mask, no map); give --control-type auto")
    if layout.file_type is None or requested in ("auto", layout.file_type):
        return layout.file_type or requested
    raise ControlNetError(f"--control-type {requested}: {layout.name} is Stability's SD3.5 Large {layout.file_type} "
                          f"ControlNet (its control_type tensor); give --control-type {layout.file_type} or auto")


def picture_note(layout: SD3ControlNetLayout, control_type: str) -> str | None:
    """What is done to the control picture of a Stability-kind file, said in the run's notes."""
    if not layout.large or control_type not in ("canny", "depth"):
        return None
    if control_type == "canny":
        return (f"{layout.name}: the canny map goes in as Stability's reference code gives it (x * 127.5 + 0.5, "
                "Stability-AI/sd3.5 sd3_infer.py)")
    return (f"{layout.name}: the depth map is inverted (1 - x) as ComfyUI's load_controlnet_sd35 does: this "
            "ControlNet was trained on maps drawn near-dark, ComfyUI's depth preprocessors draw near white")


def control_picture(picture, layout: SD3ControlNetLayout, control_type: str):
    """The control picture (PIL, at the output size) as the [1, 3, H, W] tensor the pipeline
    VAE-encodes (a tensor skips its own [-1, 1] scaling)."""
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    if layout.large and control_type == "canny":
        return pixels * 127.5 + 0.5
    if layout.large and control_type == "depth":
        pixels = 1.0 - pixels
    return pixels * 2.0 - 1.0


@contextlib.contextmanager
def seeded(seed: int, device):
    """torch's global generators seeded with ``seed`` inside, restored after: the pipeline samples
    the control picture's VAE latent from them, so without this a seed would not give one picture."""
    import torch

    devices = [device] if getattr(device, "type", device) == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def load_sd3_controlnet(path: str | os.PathLike, layout: SD3ControlNetLayout, dtype=None):
    """diffusers SD3ControlNetModel (``dtype``: float32 by default) with the file's tensors."""
    import torch

    from ..common.safetensors_file import SafetensorsFileError, load_tensors

    controlnet = _on_meta(layout.config)
    try:
        state = {k: v.to(dtype or torch.float32) for k, v in load_tensors(path, layout.name).items()
                 if k != "control_type"}
    except SafetensorsFileError as exc:
        raise ControlNetError(f"--controlnet: {layout.name}: its tensors cannot be read ({exc.reason})") from None
    if layout.layout == "stability":
        state = _from_stability(state, _split_tensor)
    try:
        return load_strict(controlnet, state, "ControlNet", layout.name, "SD3 ControlNet", assign=True)
    except CheckpointError as exc:
        raise ControlNetError(f"--controlnet: {exc}") from None


def with_sd3_controlnet(pipe, path: str, layout: SD3ControlNetLayout, dtype=None):
    """The SD3 pipeline's parts with the ControlNet, as diffusers' StableDiffusion3ControlNetPipeline
    (which gives a Stability-kind ControlNet the MMDiT's patch embedding), or its inpainting twin for
    an inpainting ControlNet (which VAE-encodes the masked control picture and adds the mask)."""
    from diffusers import StableDiffusion3ControlNetInpaintingPipeline, StableDiffusion3ControlNetPipeline

    pipeline = StableDiffusion3ControlNetInpaintingPipeline if layout.inpainting else StableDiffusion3ControlNetPipeline
    control_pipe = pipeline(
        transformer=pipe.transformer, scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2,
        text_encoder_3=pipe.text_encoder_3, tokenizer_3=pipe.tokenizer_3,
        controlnet=load_sd3_controlnet(path, layout, dtype))
    control_pipe.set_progress_bar_config(disable=True)
    return control_pipe


# alimama-creative/SD3-Controlnet-Inpainting's model card example, also diffusers'
# StableDiffusion3ControlNetInpaintingPipeline docstring example: 0.95 at every step.
INPAINT_STRENGTH = 0.95
INPAINT_SOURCE = ("HF alimama-creative/SD3-Controlnet-Inpainting model card example (controlnet_conditioning_scale="
                  "0.95, guidance_scale=7, 28 steps; the same example in diffusers' "
                  "StableDiffusion3ControlNetInpaintingPipeline docstring) "
                  "https://huggingface.co/alimama-creative/SD3-Controlnet-Inpainting")
INPAINT_SCHEDULE = "convention: the inpainting card's example sets no start/end; full schedule"
MASK_HELP = "white = repaint, black = keep"


def check_mask_file(path: str) -> None:
    """The --mask file exists and is a picture (before anything is loaded)."""
    mask_picture(path, 8, 8)


def check_mask(layout: SD3ControlNetLayout | None, mask: str | None, controlnet: str) -> None:
    """A mask goes with an SD3 inpainting ControlNet and such a ControlNet with a mask (``layout``:
    None for a ControlNet of another family, ``controlnet``: the file's name)."""
    inpainting = layout is not None and layout.inpainting
    if inpainting and mask is None:
        raise ControlNetError(f"--controlnet: {controlnet} is an inpainting ControlNet (17 input channels: the latent "
                              "of the masked picture + the mask); give --mask IMG (white = repaint, black = keep) "
                              "and the picture to repaint as --control-image")
    if mask is not None and not inpainting:
        raise ControlNetError(f"--mask: {controlnet} is no inpainting ControlNet (it takes no mask); drop --mask, or "
                              "give an SD3 inpainting ControlNet such as alimama-creative/SD3-Controlnet-Inpainting")


def inpainting_advice(control, name: str, mask: str, strength: float | None) -> None:
    """``control`` (params.control.ControlAdvice) made the inpainting card's: type "inpaint",
    strength 0.95 (or ``strength``, the user's --control-strength), the full schedule."""
    from ..params.plan import Decision

    control.control_type = "inpaint"
    control.start_percent, control.end_percent = 0.0, 1.0
    decisions = [Decision("control_type", "inpaint", f"{name} is an inpainting ControlNet",
                          "kubik: read from the file (17 input channels: latent + mask)")]
    if strength is None:
        control.strength = INPAINT_STRENGTH
        decisions.append(Decision("strength", INPAINT_STRENGTH,
                                  f"published for inpainting on sd3: {INPAINT_STRENGTH:g}", INPAINT_SOURCE))
    else:
        control.strength = strength
        decisions.append(Decision("strength", strength, f"your choice: {strength:g}", "your input: --control-strength"))
    decisions += [Decision("start_percent", 0.0, "from the first step", INPAINT_SCHEDULE),
                  Decision("end_percent", 1.0, "to the last step", INPAINT_SCHEDULE)]
    control.decisions = decisions + [d for d in control.decisions if d.field == "ip_adapter_weight"]
    control.notes = [f"{name}: repaints the white of {Path(mask).name} in the control picture ({MASK_HELP})",
                     "the kept area is redrawn under the ControlNet's guidance, not pasted back (as the card's "
                     "pipeline does)"]


def mask_picture(path: str, width: int, height: int):
    """The mask as a grey PIL picture at ``width`` x ``height`` (the control picture's size); the
    pipeline splits it at half grey (white = repaint).

    A picture with transparency is read as ComfyUI's LoadImage reads its MASK: transparent =
    repaint (255 - alpha), so a PNG saved by ComfyUI's mask editor means here what it means there;
    an opaque picture is read by its grey values."""
    from PIL import Image, ImageChops

    picture = read_picture(path, "RGBA", "--mask", f"give a PNG or JPEG mask ({MASK_HELP})", ControlNetError)
    alpha = picture.getchannel("A")
    mask = ImageChops.invert(alpha) if alpha.getextrema()[0] < 255 else picture.convert("L")
    return mask.resize((width, height), Image.Resampling.BILINEAR)
