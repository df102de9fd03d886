"""A model spread over the files ComfyUI users have, read offline: FLUX and SD3.5 come as a
diffusion model plus text encoders (models/text_encoders: CLIP-L, CLIP-G, T5-XXL) and a VAE, or
as one all-in-one file holding them all under known prefixes.

- ``Part``: one component's tensors, the file and key prefix holding them, found from the header
  by a key that only that component has (``find_prefix``); nothing is read until ``read_part``.
- CLIP and T5 configs from their shapes, the text encoders built with transformers and filled
  strictly, T5's tokenizer from ComfyUI's comfy/text_encoders/t5_tokenizer (CLIP's is
  tokenizer.py's).
- The 16-channel VAE config (FLUX's ae and SD3's VAE share the layout, not the latent scale).

The big modules (the transformer, T5, the VAE) are built on the meta device and take the file's
tensors as their parameters, read straight into the dtype they run in (bfloat16 on a GPU): a
FLUX or SD3.5 Large never sits in RAM in float32 (48 GB for FLUX's transformer alone).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .detect import CheckpointInfo
from .layout import CheckpointError, count_indexed, read_shapes
from .modules import load_strict, no_init_weights

CLIP_MARK = "text_model.embeddings.token_embedding.weight"      # a CLIP text model's token embedding
T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"     # a T5 encoder's first attention
# Keys that only quantised files carry (ComfyUI's scaled fp8, bitsandbytes NF4): not loadable here.
QUANTISED_MARKS = ("scaled_fp8", ".scale_weight", ".scale_input", ".absmax", ".quant_state", ".quant_map")


@dataclass
class Part:
    """One component's tensors: the file holding them and the key prefix inside it."""

    path: str
    prefix: str
    shapes: dict                      # key (prefix removed) -> shape

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def nbytes(self) -> int:           # as loaded, in float32
        return sum(4 * math.prod(shape) for shape in self.shapes.values())

    @property
    def largest(self) -> int:
        return max((4 * math.prod(shape) for shape in self.shapes.values()), default=0)


@dataclass
class MultiFileInfo(CheckpointInfo):
    """CheckpointInfo of a model whose parts may lie in several files (family "flux" or "sd3")."""

    files: Any = None                 # flux.FluxFiles or sd3.SD3Files
    families: tuple = ()              # the optimizer's family ids the header allows, the likeliest first
    described: str = ""               # what the header says the model is, for messages


def part(path: str, shapes: dict, prefix: str) -> Part:
    """The component of ``path`` (whose header is ``shapes``) under ``prefix``."""
    return Part(os.fspath(path), prefix, {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)})


def find_prefix(shapes: dict, mark: str) -> str | None:
    """The prefix before ``mark`` of the first key ending with it (None if no key does)."""
    key = next((k for k in shapes if k.endswith(mark)), None)
    return None if key is None else key[: -len(mark)]


def shape_of(shapes: dict, key: str, rank: int) -> list[int]:
    """The shape of ``key`` if it has ``rank`` positive dimensions; KeyError(key) otherwise."""
    shape = shapes.get(key)
    if shape is None or len(shape) != rank or not all(dim > 0 for dim in shape):
        raise KeyError(key)
    return list(shape)


def is_quantised(shapes: dict) -> bool:
    return any(mark in key for key in shapes for mark in QUANTISED_MARKS)


def read_part(item: Part, dtype=None) -> dict:
    """The part's tensors in ``dtype`` (default float32), prefix removed; an unreadable file is
    one clear line."""
    import torch

    from ..common.safetensors_file import SafetensorsFileError, open_safetensors

    try:
        with open_safetensors(item.path, item.name) as file:
            return {key[len(item.prefix):]: file.get_tensor(key).to(dtype or torch.float32)
                    for key in file.keys() if key.startswith(item.prefix)}
    except SafetensorsFileError as exc:
        raise CheckpointError(f"{item.name}: its tensors cannot be read ({exc.reason})") from None
    except Exception as exc:    # safetensors' own error type (no OSError) for a file changed since its check
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{item.name}: its tensors cannot be read ({reason})") from None


# ---------------------------------------------------------------- text encoders

def clip_config(shapes: dict, hidden_act: str = "quick_gelu") -> dict:
    """transformers CLIPTextConfig dict for a CLIP text model (keys from ``text_model.``);
    ``hidden_act``: quick_gelu for OpenAI's CLIP-L, gelu for OpenCLIP's bigG."""
    vocab, width = shape_of(shapes, CLIP_MARK, 2)
    projection = shapes.get("text_projection.weight")
    return dict(vocab_size=vocab, hidden_size=width, num_attention_heads=max(1, width // 64),
                intermediate_size=shape_of(shapes, "text_model.encoder.layers.0.mlp.fc1.weight", 2)[0],
                num_hidden_layers=count_indexed(shapes, r"text_model\.encoder\.layers\.(\d+)\."),
                max_position_embeddings=shape_of(shapes, "text_model.embeddings.position_embedding.weight", 2)[0],
                hidden_act=hidden_act, layer_norm_eps=1e-5,
                projection_dim=projection[0] if projection and len(projection) == 2 else width,
                bos_token_id=0, eos_token_id=2, pad_token_id=1)


def t5_config(shapes: dict) -> dict:
    """transformers T5Config dict for a T5 v1.1 encoder (T5-XXL: 24 layers, 4096 wide, gated GELU)."""
    vocab, width = shape_of(shapes, "shared.weight" if "shared.weight" in shapes else "encoder.embed_tokens.weight", 2)
    buckets, heads = shape_of(shapes, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2)
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    ff = shape_of(shapes, "encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight", 2)[0]
    inner = shape_of(shapes, T5_MARK, 2)[0]
    if inner % heads:
        raise KeyError(T5_MARK)
    return dict(vocab_size=vocab, d_model=width, d_kv=inner // heads, d_ff=ff, num_heads=heads,
                num_layers=count_indexed(shapes, r"encoder\.block\.(\d+)\."), relative_attention_num_buckets=buckets,
                feed_forward_proj="gated-gelu" if gated else "relu", layer_norm_epsilon=1e-6,
                is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1)


def sort_text_encoders(files, expects: str) -> tuple[list[Part], Part | None]:
    """(CLIP parts, T5 part or None) of the ``--text-encoders`` files, each checked from its
    header; ``expects`` names the files the model takes, for the errors."""
    clips, t5 = [], None
    for file in files:
        file = os.fspath(file)
        shapes = read_shapes(file, "--text-encoders")
        clip_prefix, t5_prefix = find_prefix(shapes, CLIP_MARK), find_prefix(shapes, T5_MARK)
        if clip_prefix is not None:
            clips.append(check_text_encoder(part(file, shapes, clip_prefix), "CLIP"))
        elif t5_prefix is not None:
            t5 = check_text_encoder(part(file, shapes, t5_prefix), "T5")
        else:
            raise CheckpointError(f"--text-encoders {Path(file).name}: neither CLIP nor T5 (no {CLIP_MARK} or "
                                  f"{T5_MARK}); the model takes {expects}")
    return clips, t5


def check_text_encoder(item: Part, what: str) -> Part:
    """``item`` if its header makes a CLIP or T5 (``what``) encoder; else one clear line."""
    try:
        (t5_config if what == "T5" else clip_config)(item.shapes)
    except KeyError as exc:
        raise CheckpointError(f"--text-encoders {item.name}: its {what} text encoder is incomplete (no "
                              f"{exc.args[0]} of the expected shape)") from None
    if is_quantised(item.shapes):
        raise CheckpointError(f"--text-encoders {item.name}: quantised weights (scaled fp8); give the fp16 or "
                              "plain fp8 (e4m3fn) file")
    return item


def clip_width(item: Part) -> int:
    return item.shapes[CLIP_MARK][1]


def t5_width(item: Part) -> int:
    return item.shapes[T5_MARK][1]


def load_clip(item: Part, what: str, hidden_act: str = "quick_gelu", projection: str | None = None, dtype=None):
    """CLIPTextModel (``projection`` None) or CLIPTextModelWithProjection with the file's
    text_projection ("file") or an identity one ("identity": SD3's CLIP-L pools unprojected, as in
    ComfyUI and diffusers' SD3 single-file loader), in ``dtype`` (default float32). Built for
    real (its position ids are a buffer no file holds): CLIP is small."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(**clip_config(item.shapes, hidden_act))
    with no_init_weights():     # every weight is loaded below: skip transformers' random init
        model = (CLIPTextModel if projection is None else CLIPTextModelWithProjection)(config)
    # transformers names CLIP's tensors with or without "text_model." depending on its version
    wrapped = any(k.startswith("text_model.") for k in model.state_dict())
    if projection == "file" and "text_projection.weight" not in item.shapes:
        raise CheckpointError(f"--text-encoders {item.name}: its {what} has no text_projection.weight; give "
                              "ComfyUI's clip_g.safetensors")
    tensors = read_part(item)
    state = {key if wrapped else key[len("text_model."):]: value for key, value in tensors.items()
             if key.startswith("text_model.") and not key.endswith("position_ids")}
    if projection == "file":
        state["text_projection.weight"] = tensors["text_projection.weight"]
    elif projection == "identity":
        state["text_projection.weight"] = torch.eye(config.projection_dim, config.hidden_size)
    return load_strict(model, state, f"{what} text encoder", item.name, what).to(dtype or torch.float32)


def load_t5(item: Part, dtype=None):
    """T5EncoderModel from a T5 part (``shared`` + ``encoder.*``), in ``dtype`` (default float32)."""
    import torch
    from transformers import T5Config, T5EncoderModel

    with no_init_weights(), torch.device("meta"):
        model = T5EncoderModel(T5Config(**t5_config(item.shapes)))
    state = {k: v for k, v in read_part(item, dtype).items() if k.startswith(("shared.", "encoder."))}
    embedding = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    state["shared.weight"] = embedding
    if "encoder.embed_tokens.weight" in model.state_dict():       # tied to shared in some versions
        state["encoder.embed_tokens.weight"] = embedding
    else:
        state.pop("encoder.embed_tokens.weight", None)
    return load_strict(model, state, "T5 text encoder", item.name, "T5-XXL", assign=True)


def find_t5_tokenizer(explicit: str | None) -> Path:
    """The folder with T5's tokenizer.json: ``explicit`` (only it, when given), else ComfyUI's
    comfy/text_encoders/t5_tokenizer next to the pack or under $COMFYUI_DIR."""
    if explicit:
        if (Path(explicit) / "tokenizer.json").is_file():
            return Path(explicit)
        raise CheckpointError(f"--t5-tokenizer {Path(explicit).name}: no tokenizer.json there (T5's tokenizer, "
                              "e.g. ComfyUI's comfy/text_encoders/t5_tokenizer)")
    candidates = []
    parents = Path(__file__).resolve().parents      # <ComfyUI>/custom_nodes/<pack>/kubik_core/checkpoints/
    if len(parents) > 4:
        candidates.append(parents[4] / "comfy" / "text_encoders" / "t5_tokenizer")
    if os.environ.get("COMFYUI_DIR"):
        candidates.append(Path(os.environ["COMFYUI_DIR"]) / "comfy" / "text_encoders" / "t5_tokenizer")
    for folder in candidates:
        if (folder / "tokenizer.json").is_file():
            return folder
    raise CheckpointError("T5's tokenizer files were not found: pass --t5-tokenizer with a folder holding "
                          "tokenizer.json (ComfyUI ships it in comfy/text_encoders/t5_tokenizer), or set COMFYUI_DIR")


def t5_tokenizer(explicit: str | None):
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(find_t5_tokenizer(explicit)), local_files_only=True)


# ---------------------------------------------------------------- the 16-channel VAE

def vae_part(checkpoint: str, shapes: dict, vae: str | None, inside: str, missing: str) -> Part:
    """The VAE of a FLUX or SD3 model: the ``vae`` file (--vae; its keys under whatever prefix that
    file uses) if given, else the one under ``inside`` in ``checkpoint`` (whose header is
    ``shapes``); CheckpointError ``missing`` when there is neither."""
    if vae is not None:
        vae_shapes = read_shapes(vae, "--vae")
        return part(vae, vae_shapes, find_prefix(vae_shapes, "decoder.conv_in.weight") or "")
    if f"{inside}decoder.conv_in.weight" in shapes:
        return part(checkpoint, shapes, inside)
    raise CheckpointError(missing)


def vae16_config(shapes: dict, name: str, model: str, scaling: float, shift: float) -> dict:
    """diffusers' AutoencoderKL config for the 16-channel VAE of FLUX or SD3 (``model``; keys from
    ``encoder.``), with that model's latent ``scaling`` and ``shift``."""
    levels = count_indexed(shapes, r"encoder\.down\.(\d+)\.")
    if not levels or "decoder.conv_in.weight" not in shapes:
        raise CheckpointError(f"--vae {name}: no autoencoder in it (encoder.down.*, decoder.* missing); give "
                              f"{model}'s VAE")
    try:
        latent = shape_of(shapes, "decoder.conv_in.weight", 4)[1]
        channels = [shape_of(shapes, f"encoder.down.{i}.block.0.conv1.weight", 4)[0] for i in range(levels)]
    except KeyError as exc:
        raise CheckpointError(f"--vae {name}: not the autoencoder layout (no {exc.args[0]} of the expected shape); "
                              f"give {model}'s VAE") from None
    if latent != 16:
        raise CheckpointError(f"--vae {name}: a {latent}-channel VAE; {model} needs its 16-channel VAE")
    return {"in_channels": 3, "out_channels": 3, "latent_channels": latent, "block_out_channels": channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels,
            "layers_per_block": count_indexed(shapes, r"encoder\.down\.0\.block\.(\d+)\."),
            "act_fn": "silu", "norm_num_groups": 32, "sample_size": 1024,
            "scaling_factor": scaling, "shift_factor": shift,
            "use_quant_conv": "quant_conv.weight" in shapes, "use_post_quant_conv": "post_quant_conv.weight" in shapes,
            "force_upcast": False}


def load_vae16(item: Part, config: dict, model: str, dtype=None):
    """The VAE of FLUX or SD3 (``model``) in ``dtype``, converted with diffusers' converter."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
    return load_strict(vae, convert_ldm_vae_checkpoint(read_part(item, dtype), vae.config), "VAE", item.name,
                       f"{model} VAE", assign=True)
