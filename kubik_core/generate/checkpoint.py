"""A single-file checkpoint (A1111 / kohya / ComfyUI layout) as a diffusers pipeline, offline.

diffusers' ``from_single_file`` converts the original key layout but wants the diffusers configs
of the model, which it would fetch from the Hugging Face hub. As ``kubik lora train`` does for
SDXL (lora_train/model.py, reused here: ``load_sdxl``), the configs are built from the file's own
tensor shapes, so nothing downloads:

- SDXL (and Pony, Illustrious, the SDXL distillations): ``lora_train.model.load_sdxl``.
- SD1.5 (and SD1.x fine-tunes): the UNet, CLIP-L and the VAE converted with diffusers' own
  single-file converters from configs read off the shapes here. A checkpoint whose VAE is a
  TAESD (``first_stage_model.taesd_*``, as the tiny test checkpoint has) gets diffusers'
  ``AutoencoderTiny``.

Other families (SD2, SD3.5, FLUX ...) are refused with one line naming the family: their
single-file loaders need configs, tokenizers (T5) or text encoders that are not in the file and
would be downloaded. The CLIP tokenizer comes from ``--tokenizer`` or a local ComfyUI
(``lora_train.model.find_tokenizer``).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..common.safetensors_file import SafetensorsFileError, read_header
from ..lora_train.model import CLIP_G, CLIP_L, UNET, VAE, CheckpointError, find_tokenizer, vae_config

SUPPORTED = ("sd15", "sdxl")
SD15_CLIP = "cond_stage_model.transformer.text_model."
TAESD_ENCODER = f"{VAE}taesd_encoder."
TAESD_DECODER = f"{VAE}taesd_decoder."
# SD1.x's noise schedule (the same betas as SDXL; "leading" spacing as the original DDIM sampler).
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
                      clip_sample=False, set_alpha_to_one=False)


@dataclass
class CheckpointInfo:
    """What the header says: the family and, per component, its parameter bytes in the file."""

    path: str
    family: str                       # "sd15" or "sdxl"
    component_bytes: dict             # {"unet": n, "text_encoder": n, "text_encoder_2": n, "vae": n}
    vae_kind: str                     # "kl" or "taesd"
    prediction_type: str
    largest_tensor_bytes: int         # sequential offloading keeps about this much on the GPU


def _shapes(path: str | os.PathLike) -> dict:
    """Tensor name -> shape, from the header alone."""
    if not os.path.isfile(path):
        raise CheckpointError(f"--checkpoint: no file {Path(path).name!r}; give a .safetensors checkpoint")
    try:
        header = read_header(path, Path(path).name)
    except SafetensorsFileError as exc:
        raise CheckpointError(f"{exc}; the checkpoint must be a .safetensors file") from None
    return {name: shape for name, (_, shape) in header.tensors.items()}


def detect_family(shapes: dict) -> str:
    """sd15 / sdxl, or the name of a family this loader does not support (raises for those)."""
    if f"{UNET}label_emb.0.0.weight" in shapes and f"{CLIP_G}token_embedding.weight" in shapes:
        return "sdxl"
    if f"{SD15_CLIP}embeddings.token_embedding.weight" in shapes:
        key = next((k for k in shapes if k.endswith("attn2.to_k.weight") and k.startswith(UNET)), None)
        if key is not None and shapes[key][1] == 768:
            return "sd15"
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in shapes):
        found = "FLUX"
    elif any(".joint_blocks." in k for k in shapes):
        found = "SD3/SD3.5"
    elif any(k.startswith("cond_stage_model.model.") for k in shapes):
        found = "SD2.x"
    elif any(k.startswith(UNET) for k in shapes):
        found = "an unknown UNet model"
    else:
        found = "no Stable Diffusion model (no model.diffusion_model.* tensors)"
    raise CheckpointError(f"the checkpoint holds {found}; kubik generate loads SD1.5 and SDXL "
                          "(incl. Pony and Illustrious) single-file checkpoints offline")


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Family and component sizes of ``path`` from its header (no tensor is read)."""
    shapes = _shapes(path)
    family = detect_family(shapes)
    component_bytes = {"unet": 0, "text_encoder": 0, "text_encoder_2": 0, "vae": 0}
    largest = 0
    for name, shape in shapes.items():
        nbytes = 4 * math.prod(shape)      # loaded in float32 (see load_pipeline)
        largest = max(largest, nbytes)
        if name.startswith(UNET):
            component_bytes["unet"] += nbytes
        elif name.startswith(VAE):
            component_bytes["vae"] += nbytes
        elif name.startswith(CLIP_G):
            component_bytes["text_encoder_2"] += nbytes
        elif name.startswith((CLIP_L, "cond_stage_model.")):
            component_bytes["text_encoder"] += nbytes
    return CheckpointInfo(os.fspath(path), family, component_bytes,
                          "taesd" if f"{TAESD_ENCODER}0.weight" in shapes else "kl",
                          "v_prediction" if "v_pred" in shapes else "epsilon", largest)


def _count(shapes: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def sd15_unet_config(shapes: dict, UNET: str = UNET) -> dict:
    """diffusers' UNet2DConditionModel config for an SD1.x UNet (levels, widths, depths and the
    middle block read from the keys; 8 heads as SD1.5). ``UNET``: the key prefix (an SD1.5
    ControlNet has the same input blocks under ``control_model.``)."""
    levels: list[list[tuple[int, int]]] = [[]]
    block = 1
    while f"{UNET}input_blocks.{block}.0.in_layers.0.weight" in shapes or \
            f"{UNET}input_blocks.{block}.0.op.weight" in shapes:
        if f"{UNET}input_blocks.{block}.0.op.weight" in shapes:     # a downsampler ends the level
            levels.append([])
        else:
            channels = shapes[f"{UNET}input_blocks.{block}.0.out_layers.3.weight"][0]
            depth = _count(shapes, re.escape(f"{UNET}input_blocks.{block}.1.transformer_blocks.") + r"(\d+)\.")
            levels[-1].append((channels, depth))
        block += 1
    if not levels[0] or not levels[-1] or len({len(level) for level in levels}) != 1:
        raise CheckpointError("the SD1.5 UNet's levels differ in block count (model.diffusion_model."
                              "input_blocks); not an SD1.x layout")
    channels = [level[0][0] for level in levels]
    depths = [level[0][1] for level in levels]
    attention = next(k for k in shapes if k.startswith(UNET) and k.endswith("attn2.to_k.weight"))
    proj_in = next((k for k in shapes if k.startswith(UNET) and k.endswith(".proj_in.weight")), None)
    has_middle = f"{UNET}middle_block.0.in_layers.0.weight" in shapes
    if f"{UNET}out.2.weight" not in shapes:      # a ControlNet: no output half
        return {"block_out_channels": channels, "cross_attention_dim": shapes[attention][1],
                "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
                "in_channels": shapes[f"{UNET}input_blocks.0.0.weight"][1], "layers_per_block": len(levels[0]),
                "attention_head_dim": 8, "use_linear_projection": proj_in is not None and len(shapes[proj_in]) == 2,
                "mid_block_type": "UNetMidBlock2DCrossAttn" if f"{UNET}middle_block.1.proj_in.weight" in shapes
                else "UNetMidBlock2D",
                "conditioning_channels": shapes[f"{UNET}input_hint_block.0.weight"][1]}
    return {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": channels, "center_input_sample": False,
        "cross_attention_dim": shapes[attention][1],
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": shapes[f"{UNET}input_blocks.0.0.weight"][1], "layers_per_block": len(levels[0]),
        "mid_block_type": "UNetMidBlock2DCrossAttn" if has_middle else None, "norm_eps": 1e-5,
        "norm_num_groups": 32, "out_channels": shapes[f"{UNET}out.2.weight"][0], "sample_size": 64,
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        "use_linear_projection": proj_in is not None and len(shapes[proj_in]) == 2,
    }


def sd15_text_encoder_config(shapes: dict) -> dict:
    """transformers CLIPTextConfig dict for SD1.x's CLIP ViT-L text model."""
    try:
        vocab, width = shapes[f"{SD15_CLIP}embeddings.token_embedding.weight"]
        return dict(architectures=["CLIPTextModel"], model_type="clip_text_model", vocab_size=vocab,
                    hidden_size=width, intermediate_size=shapes[f"{SD15_CLIP}encoder.layers.0.mlp.fc1.weight"][0],
                    num_attention_heads=width // 64,
                    num_hidden_layers=_count(shapes, re.escape(f"{SD15_CLIP}encoder.layers.") + r"(\d+)\."),
                    max_position_embeddings=shapes[f"{SD15_CLIP}embeddings.position_embedding.weight"][0],
                    hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                    bos_token_id=0, eos_token_id=2, pad_token_id=1)
    except KeyError as exc:
        raise CheckpointError(f"the text encoder is incomplete ({exc.args[0]} not found)") from None


def _taesd_state(state: dict) -> dict:
    """ComfyUI's TAESD keys -> diffusers AutoencoderTiny's (ComfyUI's decoder starts with a Clamp
    module that diffusers folds into its forward, so decoder indices shift by one)."""
    out = {}
    for key, value in state.items():
        if key.startswith(TAESD_ENCODER):
            index, _, rest = key[len(TAESD_ENCODER):].partition(".")
            out[f"encoder.layers.{index}.{rest}"] = value
        elif key.startswith(TAESD_DECODER):
            index, _, rest = key[len(TAESD_DECODER):].partition(".")
            out[f"decoder.layers.{int(index) - 1}.{rest}"] = value
    return out


def _no_init_weights():
    try:
        from transformers.initialization import no_init_weights
    except ImportError:            # transformers before 5
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def _load_strict(model, state: dict, what: str, file: str):
    """Load ``state`` into ``model``, every tensor accounted for; a mismatch is one clear line."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:      # a tensor of the wrong shape
        raise CheckpointError(f"{file}: its {what} does not fit the SD1.5 layout "
                              f"({str(exc).splitlines()[-1].strip()[:160]})") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        detail = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
        raise CheckpointError(f"{file}: its {what} does not fit the SD1.5 layout ({detail})")
    return model.eval()


def sd15_vae(state: dict, shapes: dict, name: str):
    """The VAE of an SD1.x checkpoint: diffusers' AutoencoderTiny for a TAESD, else the KL
    autoencoder (config from the shapes, lora_train.model.vae_config, with SD1.5's latent scale)."""
    from diffusers import AutoencoderKL, AutoencoderTiny
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if f"{TAESD_ENCODER}0.weight" in shapes:
        return _load_strict(AutoencoderTiny(), _taesd_state(state), "TAESD VAE", name)
    config = dict(vae_config(shapes), scaling_factor=0.18215, sample_size=512, force_upcast=False)
    vae = AutoencoderKL.from_config({k: v for k, v in config.items() if k != "_class_name"})
    return _load_strict(vae, convert_ldm_vae_checkpoint(state, vae.config), "VAE", name)


def load_sd15(path: str | os.PathLike, tokenizer_dir: str | None = None):
    """StableDiffusionPipeline from an SD1.x single-file checkpoint, offline, in float32."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    name = Path(path).name
    shapes = _shapes(path)
    unet_cfg = sd15_unet_config(shapes)
    te_cfg = sd15_text_encoder_config(shapes)
    vocab = find_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer(str(vocab / "vocab.json"), str(vocab / "merges.txt"), model_max_length=77)
    try:
        state = {k: v.float() for k, v in load_file(os.fspath(path)).items()}
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{name}: its tensors cannot be read ({str(exc).splitlines()[0][:160]})") from None
    unet = UNet2DConditionModel.from_config({k: v for k, v in unet_cfg.items() if k != "_class_name"})
    with _no_init_weights():     # every weight is loaded below: skip transformers' random init
        text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    unet = _load_strict(unet, convert_ldm_unet_checkpoint(state, unet.config), "UNet", name)
    # transformers names the tensors with or without "text_model." depending on its version
    prefix = "cond_stage_model.transformer." if any(
        k.startswith("text_model.") for k in text_encoder.state_dict()) else SD15_CLIP
    te_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    text_encoder = _load_strict(text_encoder, te_state, "text encoder", name)
    vae = sd15_vae(state, shapes, name)
    prediction = "v_prediction" if "v_pred" in shapes else "epsilon"
    scheduler = DDIMScheduler(**SD15_SCHEDULER, prediction_type=prediction)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def load_pipeline(path: str | os.PathLike, tokenizer_dir: str | None = None):
    """(pipeline, CheckpointInfo): a diffusers text-to-image pipeline for ``path``, offline."""
    from diffusers.utils import logging as diffusers_logging

    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()      # the command prints its own progress
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    info = inspect_checkpoint(path)
    if info.family == "sdxl":
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

        from ..lora_train.model import SDXL_SCHEDULER, load_sdxl

        parts = load_sdxl(path, tokenizer_dir)
        scheduler = EulerDiscreteScheduler(**{k: v for k, v in SDXL_SCHEDULER.items() if k != "clip_sample"},
                                           prediction_type=parts.prediction_type)
        pipe = StableDiffusionXLPipeline(vae=parts.vae, text_encoder=parts.text_encoder,
                                         text_encoder_2=parts.text_encoder_2, tokenizer=parts.tokenizer,
                                         tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=scheduler)
    else:
        pipe = load_sd15(path, tokenizer_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe, info
