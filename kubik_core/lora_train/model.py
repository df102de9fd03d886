"""A single-file SDXL checkpoint (A1111 / kohya / ComfyUI layout) as diffusers modules, offline.

diffusers' ``from_single_file`` converts the original key layout, but it wants the diffusers
configs of the model, which it would fetch from the Hugging Face hub. Here they are built from
the checkpoint's own tensor shapes instead (SDXL base's settings, with the widths and depths the
file has), so SDXL, Pony, Illustrious and the smaller SDXL distillations load without a network,
and so does the tiny SDXL-shaped checkpoint the tests build.

The CLIP tokenizer (vocab.json + merges.txt, the same files for both SDXL text encoders) comes
from ``--tokenizer``, else from the ComfyUI this pack is installed in (``comfy/sd1_tokenizer``),
else from ``$COMFYUI_DIR``: the pack never downloads it.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..common.safetensors_file import SafetensorsFileError, read_header

UNET = "model.diffusion_model."
CLIP_L = "conditioner.embedders.0.transformer.text_model."
CLIP_G = "conditioner.embedders.1.model."
VAE = "first_stage_model."
# SDXL's diffusers scheduler settings (the noise schedule every SDXL model was trained with).
SDXL_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
                      clip_sample=False)
HEAD_WIDTH = 64   # SDXL attention heads are 64 channels wide in the UNet and both text encoders


class CheckpointError(ValueError):
    """A checkpoint that is not a single-file SDXL model this trainer can load."""


@dataclass
class SDXLModel:
    """The parts training needs, in diffusers / transformers classes."""

    unet: object
    vae: object
    text_encoder: object        # CLIP ViT-L text model ("te1")
    text_encoder_2: object      # OpenCLIP bigG text model with projection ("te2")
    tokenizer: object
    tokenizer_2: object
    scheduler: object           # diffusers DDPMScheduler with SDXL's noise schedule
    prediction_type: str        # "epsilon" or "v_prediction"
    unet_original_names: dict   # diffusers UNet module path -> its path in the file (LDM layout)


def _count(shapes: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def unet_config(shapes: dict) -> dict:
    """diffusers' UNet2DConditionModel config for the SDXL-family UNet whose LDM tensors are
    ``shapes`` (levels, channels and transformer depths read from the keys)."""
    levels, block = [], 1
    while f"{UNET}input_blocks.{block}.0.in_layers.0.weight" in shapes or \
            f"{UNET}input_blocks.{block}.0.op.weight" in shapes:
        if f"{UNET}input_blocks.{block}.0.op.weight" in shapes:   # a downsampler ends the level
            block += 1
            levels.append(None)
            continue
        if not levels or levels[-1] is None:
            if levels:
                levels.pop()
            levels.append([])
        channels = shapes[f"{UNET}input_blocks.{block}.0.out_layers.3.weight"][0]
        depth = _count(shapes, re.escape(f"{UNET}input_blocks.{block}.1.transformer_blocks.") + r"(\d+)\.")
        levels[-1].append((channels, depth))
        block += 1
    if not levels or levels[-1] is None:
        raise CheckpointError("no SDXL UNet found (model.diffusion_model.input_blocks.* missing)")
    per_level = {len(level) for level in levels}
    if len(per_level) != 1 or any(len({d for _, d in level}) != 1 for level in levels):
        raise CheckpointError("the UNet's levels differ in block count or depth; not an SDXL layout")
    channels = [level[0][0] for level in levels]
    depths = [level[0][1] for level in levels]
    middle = _count(shapes, re.escape(f"{UNET}middle_block.1.transformer_blocks.") + r"(\d+)\.")
    if middle != depths[-1] or f"{UNET}label_emb.0.0.weight" not in shapes:
        raise CheckpointError("the UNet is not SDXL-shaped (middle block depth or the size "
                              "embedding label_emb differs)")
    context = shapes[f"{UNET}input_blocks.{_first_attention_block(shapes)}.1.transformer_blocks.0.attn2.to_k.weight"][1]
    return {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
        "attention_head_dim": [c // HEAD_WIDTH for c in channels], "block_out_channels": channels,
        "center_input_sample": False, "conv_in_kernel": 3, "conv_out_kernel": 3,
        "cross_attention_dim": context, "down_block_types":
            ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": shapes[f"{UNET}input_blocks.0.0.weight"][1], "layers_per_block": per_level.pop(),
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-5, "norm_num_groups": 32,
        "out_channels": shapes[f"{UNET}out.2.weight"][0],
        "projection_class_embeddings_input_dim": shapes[f"{UNET}label_emb.0.0.weight"][1],
        "sample_size": 128, "transformer_layers_per_block": [max(d, 1) for d in depths],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        "use_linear_projection": True,
    }


def _first_attention_block(shapes: dict) -> int:
    for key in shapes:
        m = re.match(re.escape(UNET) + r"input_blocks\.(\d+)\.1\.transformer_blocks\.0\.attn2\.to_k\.weight$", key)
        if m:
            return int(m.group(1))
    raise CheckpointError("the UNet has no cross-attention; not an SDXL model")


def text_encoder_configs(shapes: dict) -> tuple[dict, dict]:
    """transformers CLIPTextConfig dicts for CLIP-L (te1) and OpenCLIP bigG (te2)."""
    try:
        vocab, width_l = shapes[f"{CLIP_L}embeddings.token_embedding.weight"]
        vocab_g, width_g = shapes[f"{CLIP_G}token_embedding.weight"]
        te1 = dict(architectures=["CLIPTextModel"], model_type="clip_text_model", vocab_size=vocab,
                   hidden_size=width_l, intermediate_size=shapes[f"{CLIP_L}encoder.layers.0.mlp.fc1.weight"][0],
                   num_attention_heads=width_l // HEAD_WIDTH,
                   num_hidden_layers=_count(shapes, re.escape(f"{CLIP_L}encoder.layers.") + r"(\d+)\."),
                   max_position_embeddings=shapes[f"{CLIP_L}embeddings.position_embedding.weight"][0],
                   hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                   bos_token_id=0, eos_token_id=2, pad_token_id=1)
        te2 = dict(te1, architectures=["CLIPTextModelWithProjection"], vocab_size=vocab_g, hidden_size=width_g,
                   intermediate_size=shapes[f"{CLIP_G}transformer.resblocks.0.mlp.c_fc.weight"][0],
                   num_attention_heads=width_g // HEAD_WIDTH,
                   num_hidden_layers=_count(shapes, re.escape(f"{CLIP_G}transformer.resblocks.") + r"(\d+)\."),
                   max_position_embeddings=shapes[f"{CLIP_G}positional_embedding"][0],
                   hidden_act="gelu", projection_dim=shapes[f"{CLIP_G}text_projection"][1])
    except KeyError as exc:
        raise CheckpointError(f"the text encoders are missing ({exc.args[0]} not found): SDXL "
                              "checkpoints hold CLIP-L and OpenCLIP bigG") from None
    return te1, te2


def vae_config(shapes: dict) -> dict:
    """diffusers' AutoencoderKL config for the KL autoencoder stored under first_stage_model."""
    levels = _count(shapes, re.escape(f"{VAE}encoder.down.") + r"(\d+)\.")
    if not levels:
        raise CheckpointError("no VAE found (first_stage_model.encoder.* missing)")
    channels = [shapes[f"{VAE}encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)]
    return {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels, "in_channels": 3,
            "latent_channels": shapes[f"{VAE}quant_conv.weight"][0] // 2,
            "layers_per_block": _count(shapes, re.escape(f"{VAE}encoder.down.0.block.") + r"(\d+)\."),
            "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.13025,
            "up_block_types": ["UpDecoderBlock2D"] * levels, "force_upcast": True}


def find_tokenizer(explicit: str | None) -> Path:
    """The folder with CLIP's vocab.json and merges.txt (see the module docstring)."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    candidates.append(Path(__file__).resolve().parents[4] / "comfy" / "sd1_tokenizer")
    if os.environ.get("COMFYUI_DIR"):
        candidates.append(Path(os.environ["COMFYUI_DIR"]) / "comfy" / "sd1_tokenizer")
    for folder in candidates:
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return folder
    if explicit:
        raise CheckpointError(f"--tokenizer {explicit}: no vocab.json and merges.txt there (CLIP's "
                              "tokenizer files, e.g. ComfyUI's comfy/sd1_tokenizer)")
    raise CheckpointError("CLIP's tokenizer files were not found: pass --tokenizer with a folder holding "
                          "vocab.json and merges.txt (ComfyUI ships them in comfy/sd1_tokenizer), or set "
                          "COMFYUI_DIR")


def describe(path: str | os.PathLike) -> dict:
    """Every config the checkpoint needs, from its header alone (no tensor is read)."""
    try:
        header = read_header(path, Path(path).name)
    except SafetensorsFileError as exc:
        raise CheckpointError(f"{exc}; the base model must be a .safetensors checkpoint") from None
    shapes = {name: shape for name, (_, shape) in header.tensors.items()}
    te1, te2 = text_encoder_configs(shapes)
    return {"unet": unet_config(shapes), "vae": vae_config(shapes), "text_encoder": te1,
            "text_encoder_2": te2,
            "prediction_type": "v_prediction" if "v_pred" in shapes else "epsilon"}


def unet_original_names(path: str | os.PathLike) -> dict[str, str]:
    """diffusers module path -> original (LDM) module path for every UNet weight of the file,
    e.g. ``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in``.

    It is diffusers' own conversion (the one ``from_single_file`` loaded the UNet with) run on
    the key names instead of the tensors, so the two layouts cannot disagree.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    header = read_header(path, Path(path).name)
    shapes = {name: shape for name, (_, shape) in header.tensors.items()}
    names = {key: key for key in shapes if key.startswith(UNET)}
    converted = convert_ldm_unet_checkpoint(names, unet_config(shapes))
    return {new[: -len(".weight")]: old[len(UNET): -len(".weight")]
            for new, old in converted.items() if new.endswith(".weight") and old.endswith(".weight")}


def load_sdxl(path: str | os.PathLike, tokenizer_dir: str | None = None) -> SDXLModel:
    """Load ``path`` with diffusers, offline, in float32 (training casts as its precision asks)."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTokenizer

    diffusers_logging.disable_progress_bar()     # the trainer draws its own bars
    diffusers_logging.set_verbosity_error()

    configs = describe(path)
    vocab = find_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer(str(vocab / "vocab.json"), str(vocab / "merges.txt"), model_max_length=77)
    tokenizer_2 = CLIPTokenizer(str(vocab / "vocab.json"), str(vocab / "merges.txt"), pad_token="!",
                                model_max_length=77)
    scheduler = DDPMScheduler(**SDXL_SCHEDULER, prediction_type=configs["prediction_type"])
    with tempfile.TemporaryDirectory(prefix="kubik-sdxl-config-") as folder:
        root = Path(folder)
        index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
                 "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
                 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
        (root / "model_index.json").write_text(json.dumps(index))
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            (root / name).mkdir()
            (root / name / "config.json").write_text(json.dumps(configs[name]))
        try:
            pipe = StableDiffusionXLPipeline.from_single_file(
                os.fspath(path), config=str(root), local_files_only=True, torch_dtype=torch.float32,
                tokenizer=tokenizer, tokenizer_2=tokenizer_2, scheduler=scheduler)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"{Path(path).name}: diffusers could not load it as SDXL "
                                  f"({str(exc).splitlines()[0][:200]})") from None
    return SDXLModel(pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, tokenizer,
                     tokenizer_2, scheduler, configs["prediction_type"], unet_original_names(path))
