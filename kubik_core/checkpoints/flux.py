"""FLUX.1 [dev] and [schnell] from the files ComfyUI users have, as a diffusers FluxPipeline, offline.

A FLUX.1 model usually comes as separate files, as ComfyUI's model folders hold them:

- the diffusion model (models/diffusion_models or models/unet): Black Forest Labs' key layout
  (``double_blocks.*``, ``single_blocks.*``, ``img_in``, ``txt_in``, ``vector_in`` ...), its keys
  bare or under ``model.diffusion_model.``; ``guidance_in.*`` present = dev (guidance-distilled),
  absent = schnell (timestep-distilled, 1-4 steps);
- the text encoders (models/text_encoders): CLIP-L (``clip_l.safetensors``: ``text_model.*``) and
  T5-XXL (``t5xxl_fp16.safetensors``: ``shared`` + ``encoder.block.*``), given with
  ``--text-encoders`` in either order;
- the VAE (models/vae): BFL's ``ae.safetensors`` (``encoder.*``, ``decoder.*``, 16 latent
  channels), given with ``--vae``.

An all-in-one checkpoint (ComfyUI's CheckpointSave of a FLUX model, e.g. Comfy-Org's
flux1-dev-fp8) holds all of them, under ``model.diffusion_model.``, ``text_encoders.clip_l.
transformer.``, ``text_encoders.t5xxl.transformer.`` and ``vae.``; parts given on the command line
replace the file's own.

Every config is read off the headers' shapes (depth, widths, heads, guidance embedding), the
transformer's and the VAE's tensors are converted with diffusers' own single-file converters,
and the tokenizers are ComfyUI's (CLIP's comfy/sd1_tokenizer, T5's comfy/text_encoders/
t5_tokenizer): nothing downloads. Every file is checked against the others from the headers
before a tensor is read, so a wrong combination is one clear line, not a shape error halfway.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .detect import CheckpointInfo
from .layout import UNET, CheckpointError, count_indexed, read_shapes
from .modules import load_strict, no_init_weights, quiet_libraries
from .tokenizer import clip_tokenizer, find_tokenizer

# Where ComfyUI's CheckpointSave puts a FLUX model's other parts (supported_models.Flux).
CHECKPOINT_CLIP_L = "text_encoders.clip_l.transformer."
CHECKPOINT_T5 = "text_encoders.t5xxl.transformer."
CHECKPOINT_VAE = "vae."
CLIP_MARK = "embeddings.token_embedding.weight"      # ends a CLIP text model's token embedding
T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"
FLUX1_WIDTH = 3072            # the width diffusers' converter assumes (see _convert_transformer)
FLUX1_IN_CHANNELS = 64        # 16 latent channels in 2x2 patches; Fill (384) / Depth, Canny (128) differ
# FLUX's VAE latent normalisation (ComfyUI latent_formats.Flux; diffusers' FLUX.1 vae config).
VAE_SCALING, VAE_SHIFT = 0.3611, 0.1159
# diffusers' FluxPipeline scheduler configs (black-forest-labs/FLUX.1-dev and -schnell,
# scheduler/scheduler_config.json): dev shifts the schedule with the image size, schnell does not.
DEV_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                     max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
SCHNELL_SCHEDULER = dict(DEV_SCHEDULER, shift=1.0, use_dynamic_shifting=False)
# T5 tokens the pipeline encodes: diffusers' FluxPipeline default (512); schnell was trained on 256.
MAX_T5_TOKENS = {"dev": 512, "schnell": 256}
# Keys that only quantised files carry (ComfyUI's scaled fp8, bitsandbytes NF4): not loadable here.
QUANTISED_MARKS = ("scaled_fp8", ".scale_weight", ".scale_input", ".absmax", ".quant_state", ".quant_map")
TEXT_ENCODER_FILES = "--text-encoders clip_l.safetensors t5xxl_fp16.safetensors (ComfyUI's models/text_encoders)"


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
class FluxFiles:
    """The four parts of a FLUX.1 model, found and checked against each other from the headers."""

    variant: str                      # "dev" or "schnell"
    transformer: Part
    clip_l: Part
    t5: Part
    vae: Part

    @property
    def family(self) -> str:          # the optimizer's family id (params/families.py)
        return f"flux_{self.variant}"

    def component_bytes(self) -> dict:
        return {"transformer": self.transformer.nbytes, "text_encoder": self.clip_l.nbytes,
                "text_encoder_2": self.t5.nbytes, "vae": self.vae.nbytes}

    def largest_tensor_bytes(self) -> int:
        return max(part.largest for part in (self.transformer, self.clip_l, self.t5, self.vae))


@dataclass
class FluxInfo(CheckpointInfo):
    """CheckpointInfo of a FLUX.1 model (family "flux"), with the files of its parts."""

    files: FluxFiles | None = None


def inspect_flux(checkpoint: str | os.PathLike, text_encoders: list | tuple = (), vae: str | None = None) -> FluxInfo:
    """The FLUX model's parts and their sizes from the headers (no tensor is read); see
    resolve_flux_files for the errors."""
    files = resolve_flux_files(checkpoint, text_encoders, vae)
    return FluxInfo(os.fspath(checkpoint), "flux", files.component_bytes(), "kl", "flow",
                    files.largest_tensor_bytes(), files)


def _sub(shapes: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def transformer_prefix(shapes: dict) -> str | None:
    """"" or "model.diffusion_model." where the FLUX double blocks are; None for no FLUX model."""
    for prefix in ("", UNET):
        if f"{prefix}double_blocks.0.img_attn.qkv.weight" in shapes:
            return prefix
    return None


def transformer_config(shapes: dict, name: str) -> dict:
    """diffusers' FluxTransformer2DModel config from a FLUX.1 transformer's shapes (keys without
    prefix); refuses FLUX relatives that this pipeline cannot run, naming them."""
    try:
        return _transformer_config(shapes, name)
    except KeyError as exc:
        raise CheckpointError(f"{name}: its FLUX transformer does not have FLUX.1's layout (no {exc.args[0]} "
                              "of the expected shape)") from None


def _shape(shapes: dict, key: str, rank: int) -> list[int]:
    """The shape of ``key`` if it has ``rank`` positive dimensions; KeyError(key) otherwise."""
    shape = shapes.get(key)
    if shape is None or len(shape) != rank or not all(dim > 0 for dim in shape):
        raise KeyError(key)
    return list(shape)


def _transformer_config(shapes: dict, name: str) -> dict:
    if "double_stream_modulation_img.lin.weight" in shapes:
        raise CheckpointError(f"{name} holds a FLUX.2 model; kubik generate loads FLUX.1 dev and schnell")
    if "img_in.weight" not in shapes or "vector_in.in_layer.weight" not in shapes:
        raise CheckpointError(f"{name} holds a FLUX relative without CLIP conditioning (Chroma?); kubik "
                              "generate loads FLUX.1 dev and schnell")
    if any(mark in key for key in shapes for mark in QUANTISED_MARKS):
        raise CheckpointError(f"{name} holds quantised weights (scaled fp8 or NF4); give the fp16/bf16 or "
                              "plain fp8 (e4m3fn) file")
    width, in_channels = _shape(shapes, "img_in.weight", 2)
    if in_channels != FLUX1_IN_CHANNELS:
        raise CheckpointError(f"{name} takes {in_channels} input channels (FLUX.1 Fill, Depth or Canny); kubik "
                              f"generate loads the text-to-image FLUX.1 dev and schnell ({FLUX1_IN_CHANNELS})")
    head_dim = _shape(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", 1)[0]
    single_blocks = count_indexed(shapes, r"single_blocks\.(\d+)\.")
    if width % head_dim or _shape(shapes, "double_blocks.0.img_mlp.0.weight", 2)[0] != 4 * width \
            or not single_blocks:
        raise CheckpointError(f"{name}: its blocks do not have FLUX.1's proportions (heads dividing "
                              f"the width {width}, MLP 4x wide, single blocks after the double ones)")
    # FLUX.1's rotary axes (16, 56, 56) for 128-wide heads, scaled to other head widths.
    axis = head_dim // 8
    sides = (head_dim - axis) // 2
    if axis % 2 or sides % 2 or axis + 2 * sides != head_dim:
        raise CheckpointError(f"{name}: {head_dim}-wide attention heads cannot take FLUX's 3-axis rotary "
                              "embedding")
    return {"patch_size": 1, "in_channels": in_channels, "out_channels": None,
            "num_layers": count_indexed(shapes, r"double_blocks\.(\d+)\."),
            "num_single_layers": single_blocks,
            "attention_head_dim": head_dim, "num_attention_heads": width // head_dim,
            "joint_attention_dim": _shape(shapes, "txt_in.weight", 2)[1],
            "pooled_projection_dim": _shape(shapes, "vector_in.in_layer.weight", 2)[1],
            "guidance_embeds": "guidance_in.in_layer.weight" in shapes,
            "axes_dims_rope": (axis, sides, sides)}


def clip_config(shapes: dict) -> dict:
    """transformers CLIPTextConfig dict for CLIP-L's text model (keys from ``embeddings.``)."""
    vocab, width = _shape(shapes, CLIP_MARK, 2)
    return dict(vocab_size=vocab, hidden_size=width, num_attention_heads=max(1, width // 64),
                intermediate_size=_shape(shapes, "encoder.layers.0.mlp.fc1.weight", 2)[0],
                num_hidden_layers=count_indexed(shapes, r"encoder\.layers\.(\d+)\."),
                max_position_embeddings=_shape(shapes, "embeddings.position_embedding.weight", 2)[0],
                hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                bos_token_id=0, eos_token_id=2, pad_token_id=1)


def t5_config(shapes: dict) -> dict:
    """transformers T5Config dict for a T5 v1.1 encoder (T5-XXL: 24 layers, 4096 wide, gated GELU)."""
    vocab, width = _shape(shapes, "shared.weight" if "shared.weight" in shapes else "encoder.embed_tokens.weight", 2)
    buckets, heads = _shape(shapes, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2)
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    ff = _shape(shapes, "encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight", 2)[0]
    inner = _shape(shapes, T5_MARK, 2)[0]
    if inner % heads:
        raise KeyError(T5_MARK)
    return dict(vocab_size=vocab, d_model=width, d_kv=inner // heads, d_ff=ff, num_heads=heads,
                num_layers=count_indexed(shapes, r"encoder\.block\.(\d+)\."), relative_attention_num_buckets=buckets,
                feed_forward_proj="gated-gelu" if gated else "relu", layer_norm_epsilon=1e-6,
                is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1)


def vae_config(shapes: dict, name: str) -> dict:
    """diffusers' AutoencoderKL config for FLUX's VAE (BFL's ae layout, keys from ``encoder.``)."""
    levels = count_indexed(shapes, r"encoder\.down\.(\d+)\.")
    if not levels or "decoder.conv_in.weight" not in shapes:
        raise CheckpointError(f"--vae {name}: no autoencoder in it (encoder.down.*, decoder.* missing); give "
                              "FLUX's ae.safetensors")
    try:
        latent = _shape(shapes, "decoder.conv_in.weight", 4)[1]
        channels = [_shape(shapes, f"encoder.down.{i}.block.0.conv1.weight", 4)[0] for i in range(levels)]
    except KeyError as exc:
        raise CheckpointError(f"--vae {name}: not FLUX's autoencoder layout (no {exc.args[0]} of the expected "
                              "shape); give FLUX's ae.safetensors") from None
    if latent != 16:
        raise CheckpointError(f"--vae {name}: a {latent}-channel VAE; FLUX needs its 16-channel ae.safetensors")
    return {"in_channels": 3, "out_channels": 3, "latent_channels": latent,
            "block_out_channels": channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels,
            "layers_per_block": count_indexed(shapes, r"encoder\.down\.0\.block\.(\d+)\."),
            "act_fn": "silu", "norm_num_groups": 32, "sample_size": 1024,
            "scaling_factor": VAE_SCALING, "shift_factor": VAE_SHIFT,
            "use_quant_conv": "quant_conv.weight" in shapes, "use_post_quant_conv": "post_quant_conv.weight" in shapes,
            "force_upcast": False}


def _find(shapes: dict, mark: str) -> str | None:
    """The prefix before ``mark`` of the first key ending with it (None if no key does)."""
    key = next((k for k in shapes if k.endswith(mark)), None)
    return None if key is None else key[: -len(mark)]


def resolve_flux_files(checkpoint: str | os.PathLike, text_encoders: list | tuple = (),
                       vae: str | None = None) -> FluxFiles:
    """The transformer in ``checkpoint`` with its text encoders and VAE (from ``text_encoders`` /
    ``vae``, else from the checkpoint itself), each checked against the transformer's shapes."""
    checkpoint = os.fspath(checkpoint)
    shapes = read_shapes(checkpoint)
    name = Path(checkpoint).name
    prefix = transformer_prefix(shapes)
    if prefix is None:
        raise CheckpointError(f"{name} holds no FLUX.1 transformer (double_blocks.* missing)")
    transformer = Part(checkpoint, prefix, _sub(shapes, prefix))
    config = transformer_config(transformer.shapes, name)
    clip = t5 = None
    if f"{CHECKPOINT_CLIP_L}text_model.{CLIP_MARK}" in shapes:
        clip = Part(checkpoint, f"{CHECKPOINT_CLIP_L}text_model.", _sub(shapes, f"{CHECKPOINT_CLIP_L}text_model."))
    if f"{CHECKPOINT_T5}{T5_MARK}" in shapes:
        t5 = Part(checkpoint, CHECKPOINT_T5, _sub(shapes, CHECKPOINT_T5))
    for file in text_encoders:
        file = os.fspath(file)
        encoder_shapes = read_shapes(file, "--text-encoders")
        clip_prefix, t5_prefix = _find(encoder_shapes, CLIP_MARK), _find(encoder_shapes, T5_MARK)
        if clip_prefix is not None:
            clip = Part(file, clip_prefix, _sub(encoder_shapes, clip_prefix))
        elif t5_prefix is not None:
            t5 = Part(file, t5_prefix, _sub(encoder_shapes, t5_prefix))
        else:
            raise CheckpointError(f"--text-encoders {Path(file).name}: neither CLIP-L nor T5 (no "
                                  f"{CLIP_MARK} or {T5_MARK}); FLUX takes {TEXT_ENCODER_FILES}")
    missing = [what for what, part in (("clip_l.safetensors", clip), ("t5xxl_fp16.safetensors", t5)) if part is None]
    if missing:
        raise CheckpointError(f"{name} is a FLUX diffusion model without its text encoders ({' and '.join(missing)} "
                              f"missing); pass {TEXT_ENCODER_FILES}")
    for part, read_config, what in ((clip, clip_config, "CLIP-L"), (t5, t5_config, "T5")):
        try:
            read_config(part.shapes)
        except KeyError as exc:
            raise CheckpointError(f"--text-encoders {part.name}: its {what} text encoder is incomplete (no "
                                  f"{exc.args[0]} of the expected shape)") from None
    clip_width = clip.shapes[CLIP_MARK][1]
    if clip_width != config["pooled_projection_dim"]:
        raise CheckpointError(f"--text-encoders {clip.name}: its CLIP is {clip_width} wide, the FLUX model takes "
                              f"{config['pooled_projection_dim']} (CLIP-L); give clip_l.safetensors")
    t5_width = t5.shapes[T5_MARK][1]
    if t5_width != config["joint_attention_dim"]:
        raise CheckpointError(f"--text-encoders {t5.name}: its T5 is {t5_width} wide, the FLUX model takes "
                              f"{config['joint_attention_dim']} (T5-XXL); give t5xxl_fp16.safetensors or "
                              "t5xxl_fp8_e4m3fn.safetensors")
    for part in (clip, t5):
        if any(mark in key for key in part.shapes for mark in QUANTISED_MARKS):
            raise CheckpointError(f"--text-encoders {part.name}: quantised weights (scaled fp8); give the fp16 "
                                  "or plain fp8 (e4m3fn) file")
    if vae is not None:
        vae = os.fspath(vae)
        vae_shapes = read_shapes(vae, "--vae")
        vae_prefix = _find(vae_shapes, "decoder.conv_in.weight") or ""
        vae_part = Part(vae, vae_prefix, _sub(vae_shapes, vae_prefix))
    elif f"{CHECKPOINT_VAE}decoder.conv_in.weight" in shapes:
        vae_part = Part(checkpoint, CHECKPOINT_VAE, _sub(shapes, CHECKPOINT_VAE))
    else:
        raise CheckpointError(f"{name} is a FLUX diffusion model without its VAE; pass --vae ae.safetensors "
                              "(ComfyUI's models/vae)")
    vae_config(vae_part.shapes, vae_part.name)
    return FluxFiles("dev" if config["guidance_embeds"] else "schnell", transformer, clip, t5, vae_part)


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


def _read(part: Part) -> dict:
    """The part's tensors in float32, prefix removed; an unreadable file is one clear line."""
    from safetensors import safe_open

    try:
        with safe_open(part.path, "pt") as file:
            return {key[len(part.prefix):]: file.get_tensor(key).float()
                    for key in file.keys() if key.startswith(part.prefix)}
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{part.name}: its tensors cannot be read ({str(exc).splitlines()[0][:160]})") from None


def _convert_transformer(state: dict, width: int) -> dict:
    """BFL keys -> diffusers' with diffusers' converter. It splits each single block's fused
    linear1 (q, k, v, MLP) at FLUX.1's width 3072; for any other width (distillations, the tests'
    tiny model) that one split is done here and the converter gets stand-ins of the size it expects."""
    import torch
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    fused = {}
    if width != FLUX1_WIDTH:
        for key in [k for k in state if re.fullmatch(r"single_blocks\.\d+\.linear1\.(weight|bias)", k)]:
            fused[key] = state.pop(key)
            state[key] = torch.empty((7 * FLUX1_WIDTH, *fused[key].shape[1:]), device="meta")
    converted = convert_flux_transformer_checkpoint_to_diffusers(state)
    for key, value in fused.items():
        block, kind = key.split(".")[1], key.rsplit(".", 1)[1]
        q, k, v, mlp = torch.split(value, (width, width, width, 4 * width), dim=0)
        for target, tensor in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
            converted[f"single_transformer_blocks.{block}.{target}.{kind}"] = tensor
    return converted


def load_flux(files: FluxFiles, tokenizer_dir: str | None = None, t5_tokenizer_dir: str | None = None):
    """diffusers FluxPipeline (float32, on the CPU) from ``files``, offline."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

    quiet_libraries()
    tokenizer = clip_tokenizer(find_tokenizer(tokenizer_dir))
    tokenizer_2 = T5TokenizerFast.from_pretrained(str(find_t5_tokenizer(t5_tokenizer_dir)), local_files_only=True)
    config = transformer_config(files.transformer.shapes, files.transformer.name)
    transformer = FluxTransformer2DModel.from_config(config)
    try:
        state = _convert_transformer(_read(files.transformer), transformer.config.num_attention_heads
                                     * transformer.config.attention_head_dim)
    except (KeyError, RuntimeError, ValueError) as exc:     # a block missing a tensor, or a wrong size
        raise CheckpointError(f"{files.transformer.name}: its FLUX transformer does not fit the FLUX.1 layout "
                              f"({str(exc).splitlines()[0][:160]})") from None
    transformer = load_strict(transformer, state, "FLUX transformer", files.transformer.name, "FLUX.1")

    with no_init_weights():     # every weight is loaded below: skip transformers' random init
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip_config(files.clip_l.shapes)))
        text_encoder_2 = T5EncoderModel(T5Config(**t5_config(files.t5.shapes)))
    # transformers names CLIP's tensors with or without "text_model." depending on its version
    clip_prefix = "text_model." if any(k.startswith("text_model.") for k in text_encoder.state_dict()) else ""
    clip_state = {clip_prefix + k: v for k, v in _read(files.clip_l).items()
                  if k.startswith(("embeddings.", "encoder.", "final_layer_norm."))
                  and not k.endswith("position_ids")}
    text_encoder = load_strict(text_encoder, clip_state, "CLIP-L text encoder", files.clip_l.name, "CLIP-L")
    t5_state = {k: v for k, v in _read(files.t5).items() if k.startswith(("shared.", "encoder."))}
    embedding = t5_state.get("shared.weight", t5_state.get("encoder.embed_tokens.weight"))
    t5_state.update({"shared.weight": embedding, "encoder.embed_tokens.weight": embedding})
    t5_keys = set(text_encoder_2.state_dict())
    t5_state = {k: v for k, v in t5_state.items() if k in t5_keys or not k.endswith("embed_tokens.weight")}
    text_encoder_2 = load_strict(text_encoder_2, t5_state, "T5 text encoder", files.t5.name, "T5-XXL")

    vae = AutoencoderKL.from_config(vae_config(files.vae.shapes, files.vae.name))
    vae = load_strict(vae, convert_ldm_vae_checkpoint(_read(files.vae), vae.config), "VAE", files.vae.name,
                      "FLUX ae")
    scheduler = FlowMatchEulerDiscreteScheduler(**(DEV_SCHEDULER if files.variant == "dev" else SCHNELL_SCHEDULER))
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
