"""The SigLIP vision encoder InstantX's IP-Adapters read (google/siglip-so400m-patch14-384), local only.

``--image-encoder`` names it as users have it:

- a folder as transformers saves it: ``config.json`` + ``model.safetensors``, either the whole
  SiglipModel (google/siglip-so400m-patch14-384 as downloaded: ``model_type`` "siglip" with a
  ``vision_config``; its text tower's tensors are left unread) or SiglipVisionModel alone
  (``model_type`` "siglip_vision_model");
- one file as in ComfyUI's models/clip_vision (``sigclip_vision_patch14_384.safetensors``), in
  transformers' key layout (``vision_model.*``), whose settings are the so400m tower's its shapes
  name (the values of ComfyUI's comfy/clip_vision_siglip_384.json; the heads are not in the shapes).

The tower's tensors are ``vision_model.<name>`` in the whole model, in ComfyUI's file and in
transformers 4's SiglipVisionModel; transformers 5 saves SiglipVisionModel without the prefix.
Both are read, and matched to the names of the transformers installed.

The config is read with a size bound and checked value by value, the model is built on the meta
device and compared with the header, and only then are the vision tensors loaded, strictly.
The IP-Adapters read the penultimate layer's hidden states (diffusers' SD3 pipeline:
``hidden_states[-2]``), ``hidden_size`` wide. Nothing is downloaded.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..common.model_config import ConfigFileError, load_config_file
from ..common.safetensors_file import SafetensorsFileError, open_safetensors, read_header
from .adapter_common import MAX_CONFIG_BYTES, EncoderLayout, IPAdapterError

WEIGHTS = "model.safetensors"
VISION = "vision_model."
FIX = ("give google/siglip-so400m-patch14-384's folder (config.json and model.safetensors) or ComfyUI's "
       "sigclip_vision_patch14_384.safetensors")
# SigLIP towers a single file may hold, told by (width, layers, positions): (heads, picture side),
# as ComfyUI's comfy/clip_vision_siglip_384.json and _512.json give them (neither is in the shapes:
# 384 / patch 14 leaves a margin, 27 x 14 = 378).
KNOWN_TOWERS = {(1152, 27, 729): (16, 384), (1152, 27, 1024): (16, 512)}
HIDDEN_ACTS = ("gelu_pytorch_tanh", "gelu", "quick_gelu", "gelu_new")
_INT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
               "patch_size", "num_channels")
_DEFAULTS = {"num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}
_TOWER_PARTS = ("embeddings.", "encoder.", "post_layernorm.", "head.")
_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.")


def weights_path(encoder: EncoderLayout) -> Path:
    """The safetensors file holding the encoder's tensors."""
    path = Path(encoder.path)
    return path / WEIGHTS if path.is_dir() else path


def _tower(shapes: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The vision tower's tensors: {name without ``vision_model.``: (the file's key, shape)}."""
    prefixed = {k[len(VISION):]: (k, s) for k, s in shapes.items() if k.startswith(VISION)}
    return prefixed or {k: (k, s) for k, s in shapes.items() if k.startswith(_TOWER_PARTS)}


def _shapes(path: Path, name: str) -> dict[str, tuple[int, ...]]:
    if not path.is_file():
        raise IPAdapterError(f"--image-encoder: {name}: no {path.name}; {FIX}")
    try:
        header = read_header(path, name)
    except SafetensorsFileError as exc:
        raise IPAdapterError(f"--image-encoder: {exc}; {FIX}") from None
    return {k: tuple(s) for k, (_, s) in header.tensors.items()}


def _folder_config(folder: Path) -> dict:
    """SiglipVisionConfig values from a folder's config.json (whole SiglipModel or vision tower)."""
    name = folder.name
    try:
        config = load_config_file(folder / "config.json", MAX_CONFIG_BYTES)
    except ConfigFileError as exc:
        raise IPAdapterError(f"--image-encoder: {name}: {exc}; {FIX}") from None
    kind = " ".join(str(config.get("model_type")).split())[:40]    # one line, whatever the file holds
    if kind == "siglip" and isinstance(config.get("vision_config"), dict):
        config = config["vision_config"]
    elif kind != "siglip_vision_model":
        raise IPAdapterError(f"--image-encoder: {name} holds a {kind} model, not the SigLIP vision encoder "
                             f"InstantX's IP-Adapters read; {FIX}")
    values = {**_DEFAULTS, **{k: config[k] for k in (*_INT_FIELDS, "hidden_act", "layer_norm_eps") if k in config}}
    missing = [k for k in _INT_FIELDS if k not in values]
    if missing:
        raise IPAdapterError(f"--image-encoder: {name}: config.json has no {missing[0]}; {FIX}")
    if not all(isinstance(values[k], int) and not isinstance(values[k], bool) and 0 < values[k] <= 16384
               for k in _INT_FIELDS):
        raise IPAdapterError(f"--image-encoder: {name}: config.json's {', '.join(_INT_FIELDS)} must be whole "
                             "numbers from 1 to 16384")
    eps = values["layer_norm_eps"]
    if values["hidden_act"] not in HIDDEN_ACTS or isinstance(eps, bool) or not isinstance(eps, (int, float)) \
            or not 0 < eps < 1:
        raise IPAdapterError(f"--image-encoder: {name}: config.json's hidden_act must be one of "
                             f"{', '.join(HIDDEN_ACTS)} and layer_norm_eps between 0 and 1")
    return values


def _single_file_config(shapes: dict, name: str) -> dict:
    """SiglipVisionConfig values of a single-file SigLIP tower (transformers' key layout)."""
    if "visual_projection.weight" in shapes:
        raise IPAdapterError(f"--image-encoder: {name} is a CLIP vision model, but InstantX's IP-Adapters read "
                             f"SigLIP's hidden states; {FIX}")
    shapes = {k: s for k, (_, s) in _tower(shapes).items()}
    if "embeddings.class_embedding" in shapes:
        raise IPAdapterError(f"--image-encoder: {name} is a CLIP vision model, but InstantX's IP-Adapters read "
                             f"SigLIP's hidden states; {FIX}")
    try:
        width, channels, patch, _ = shapes["embeddings.patch_embedding.weight"]
        positions = shapes["embeddings.position_embedding.weight"][0]
        intermediate = shapes["encoder.layers.0.mlp.fc1.weight"][0]
    except (KeyError, ValueError, IndexError):     # IndexError: a 0-D shape
        raise IPAdapterError(f"--image-encoder: {name} is not a SigLIP vision model in transformers' layout "
                             f"(vision_model.embeddings.*, vision_model.encoder.layers.*); {FIX}") from None
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := _LAYER.match(k)))
    tower = KNOWN_TOWERS.get((width, layers, positions))
    if tower is None:
        raise IPAdapterError(f"--image-encoder: {name} is a {layers}-layer, {width}-wide vision tower with {positions} "
                             "positions, not a SigLIP so400m (384 or 512) whose settings are known; give its folder "
                             "with config.json")
    return dict(hidden_size=width, intermediate_size=intermediate, num_hidden_layers=layers,
                num_attention_heads=tower[0], image_size=tower[1], patch_size=patch, num_channels=channels,
                **{k: v for k, v in _DEFAULTS.items() if k != "num_channels"})


def inspect_siglip(path: str | os.PathLike) -> EncoderLayout:
    """The SigLIP encoder at ``path`` (folder or single file), from its config or header; the
    layout's ``single_file_config`` holds the SiglipVisionConfig values either way."""
    path = Path(path)
    if not path.exists():
        raise IPAdapterError(f"--image-encoder: no file or folder {path.name!r}; {FIX}")
    if path.is_dir():
        config = _folder_config(path)
    else:
        config = _single_file_config(_shapes(path, path.name), path.name)
    # the encoder gives hidden states, not projected embeddings: hidden_size both times
    return EncoderLayout(path.name, str(path), config["hidden_size"], config["hidden_size"], config["image_size"],
                         config)


def has_pooling_head(encoder: EncoderLayout) -> bool:
    """Whether the file holds SigLIP's attention-pooling head (its pooled embedding), from the header."""
    return "head.probe" in _tower(_shapes(weights_path(encoder), encoder.name))


def load_siglip(encoder: EncoderLayout):
    """transformers SiglipVisionModel (float32, eval) with the file's vision tensors, checked on
    the meta device against the header first."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from ..common.weights import WeightsFileError, check_matches

    path = weights_path(encoder)
    tower = _tower(_shapes(path, encoder.name))
    try:
        settings = SiglipVisionConfig(**encoder.single_file_config, vision_use_head="head.probe" in tower)
        with torch.device("meta"):
            probe = SiglipVisionModel(settings)
    except Exception as exc:    # transformers refusing a value (heads not dividing the width ...)
        raise IPAdapterError(f"--image-encoder: {encoder.name}: its config does not describe a SigLIP vision "
                             f"model ({' '.join(str(exc).split())[:160]}); {FIX}") from None
    prefix = VISION if any(k.startswith(VISION) for k in probe.state_dict()) else ""   # transformers 4 or 5
    try:
        check_matches(probe, {prefix + k: shape for k, (_, shape) in tower.items()}, encoder.name)
    except WeightsFileError as exc:
        raise IPAdapterError(f"--image-encoder: {exc}; {FIX}") from None
    try:      # the tower's tensors only (a whole SiglipModel also holds the text tower)
        with open_safetensors(path, encoder.name) as handle:
            state = {prefix + k: handle.get_tensor(key).float() for k, (key, _) in tower.items()}
    except SafetensorsFileError as exc:
        raise IPAdapterError(f"--image-encoder: {exc}; {FIX}") from None
    except Exception as exc:    # safetensors' own error for a file cut short since its header was read
        raise IPAdapterError(f"--image-encoder: {encoder.name}: its tensors cannot be read "
                             f"({' '.join(str(exc).split())[:120]}); {FIX}") from None
    model = SiglipVisionModel(settings)
    model.load_state_dict(state, strict=True)
    return model.eval()


def image_processor(encoder: EncoderLayout):
    """SigLIP's preprocessing at the encoder's size: a bicubic resize to a square, then
    (x/255 - 0.5)/0.5 (transformers' SiglipImageProcessor defaults, which so400m-patch14-384's
    preprocessor_config.json keeps, at 384)."""
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(size={"height": encoder.image_size, "width": encoder.image_size})
