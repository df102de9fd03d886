"""Write small but real LoRA files: the key layouts and metadata trainers write, tiny ranks.

Used by the tests, the benchmark and ``kubik demo`` to build a library without downloading
anything. The module names and shapes are those of real SD1.5 / SDXL / FLUX.1 LoRAs (a few
modules each, not all of them): kohya-ss sd-scripts names (``lora_unet_*``, ``lora_te*_``,
``.lora_down/.lora_up/.alpha``), diffusers+PEFT names (``unet.*.lora_A/lora_B``), diffusers
attention-processor names (``unet.*.processor.to_q_lora.down``, text encoders
``*.lora_linear_layer.down``), LyCORIS names on kohya modules (LoCon adds convolutions
``.lora_down`` [rank, in, 3, 3]; LoHa ``.hada_w1_a/.hada_w1_b/.hada_w2_a/.hada_w2_b``; LoKr
``.lokr_w1/.lokr_w2``), FLUX.1 diffusers names as ai-toolkit saves them
(``transformer.single_transformer_blocks.*.lora_A``), and the kohya ``ss_*`` / ``modelspec.*``
metadata. Tensor values are random; nothing here is a model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

# (module name, in features, out features) per layout and base architecture.
_MODULES = {
    ("kohya", "sd1"): [
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768, 320),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v", 768, 320),
        ("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k", 768, 1280),
        ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
        ("lora_te_text_model_encoder_layers_0_mlp_fc1", 768, 3072),
    ],
    ("kohya", "sd2"): [
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 1024, 320),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v", 1024, 320),
        ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 1024, 1024),
    ],
    ("kohya", "sdxl"): [
        ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", 640, 640),
        ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, 640),
        ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_v", 2048, 640),
        ("lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k", 2048, 1280),
        ("lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_2", 5120, 1280),
        ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
        ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280),
    ],
    ("kohya", "flux"): [
        ("lora_unet_double_blocks_0_img_attn_qkv", 3072, 9216),
        ("lora_unet_double_blocks_0_txt_attn_proj", 3072, 3072),
        ("lora_unet_single_blocks_0_linear1", 3072, 21504),
    ],
    ("peft", "sd1"): [
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 320, 320),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 768, 320),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v", 768, 320),
        ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
    ],
    ("peft", "sdxl"): [
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", 640, 640),
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 2048, 640),
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v", 2048, 640),
        ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
        ("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", 1280, 1280),
    ],
    # ai-toolkit's FLUX.1 LoRAs: diffusers transformer names with PEFT lora_A/lora_B
    ("peft", "flux"): [
        ("transformer.transformer_blocks.0.attn.to_q", 3072, 3072),
        ("transformer.transformer_blocks.0.attn.add_k_proj", 3072, 3072),
        ("transformer.single_transformer_blocks.0.attn.to_k", 3072, 3072),
        ("transformer.single_transformer_blocks.0.proj_mlp", 3072, 12288),
    ],
    # diffusers' attention-processor LoRAs (save_attn_procs) and transformers text-encoder LoRAs
    ("diffusers", "sd1"): [
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q", 320, 320),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k", 768, 320),
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_v", 768, 320),
        ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
    ],
    ("diffusers", "sdxl"): [
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q", 640, 640),
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k", 2048, 640),
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_v", 2048, 640),
        ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
        ("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", 1280, 1280),
    ],
}
# LyCORIS (lycoris.kohya) keeps kohya's module names; LoCon also trains convolutions:
# (module, in channels, out channels), kernel 3x3.
_LYCORIS_CONV = {
    "sd1": [("lora_unet_down_blocks_0_resnets_0_conv1", 320, 320)],
    "sdxl": [("lora_unet_input_blocks_1_0_in_layers_2", 320, 320)],
}
LYCORIS_ALGOS = ("locon", "loha", "lokr")
for _algo in LYCORIS_ALGOS:
    for _base in _LYCORIS_CONV:
        _MODULES[(_algo, _base)] = _MODULES[("kohya", _base)]
LAYOUTS = sorted({k for k in _MODULES})
_KOHYA_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", "flux": "flux1"}
_MODELSPEC = {"sd1": "stable-diffusion-v1/lora", "sd2": "stable-diffusion-v2-768-v/lora",
              "sdxl": "stable-diffusion-xl-v1-base/lora", "flux": "flux-1-dev/lora"}


def lora_tensors(layout: str, base: str, rank: int = 2, seed: int = 0):
    """{key: tensor} in the layout's naming, with real shapes at ``rank``."""
    import torch

    try:
        modules = _MODULES[(layout, base)]
    except KeyError:
        raise ValueError(f"no synthetic layout {layout!r} for {base!r}; have {LAYOUTS}") from None
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, fan_in, fan_out in modules:
        down = torch.randn(rank, fan_in, generator=gen, dtype=torch.float32).to(torch.float16) * 0.01
        up = torch.zeros(fan_out, rank, dtype=torch.float16)
        if layout == "loha":
            for pair in ("1", "2"):
                tensors[f"{name}.hada_w{pair}_a"] = up.clone()
                tensors[f"{name}.hada_w{pair}_b"] = down.clone()
            tensors[f"{name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
        elif layout == "lokr":
            # Kronecker factors: w1 [4, 4] (x) w2 [out/4, in/4] gives [out, in].
            tensors[f"{name}.lokr_w1"] = torch.randn(4, 4, generator=gen).to(torch.float16)
            tensors[f"{name}.lokr_w2"] = torch.zeros(fan_out // 4, fan_in // 4, dtype=torch.float16)
            tensors[f"{name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
        elif layout in ("kohya", "locon"):
            tensors[f"{name}.lora_down.weight"] = down
            tensors[f"{name}.lora_up.weight"] = up
            tensors[f"{name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
        elif layout == "diffusers":
            form = "{}_lora.{}.weight" if ".processor." in name else "{}.lora_linear_layer.{}.weight"
            tensors[form.format(name, "down")] = down
            tensors[form.format(name, "up")] = up
        else:
            tensors[f"{name}.lora_A.weight"] = down
            tensors[f"{name}.lora_B.weight"] = up
    if layout == "locon":
        for name, channels_in, channels_out in _LYCORIS_CONV[base]:
            down = torch.randn(rank, channels_in, 3, 3, generator=gen).to(torch.float16) * 0.01
            tensors[f"{name}.lora_down.weight"] = down
            tensors[f"{name}.lora_up.weight"] = torch.zeros(channels_out, rank, 1, 1, dtype=torch.float16)
            tensors[f"{name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
    return tensors


def kohya_metadata(base: str, output_name: str, rank: int = 2, tags: Mapping[str, int] | None = None,
                   base_model_name: str = "", trigger: str = "", title: str = "",
                   clip_skip: int | None = None) -> dict[str, str]:
    """``__metadata__`` as sd-scripts' train_network.py writes it (strings only)."""
    meta = {
        "ss_output_name": output_name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(rank)),
        "ss_base_model_version": _KOHYA_VERSION.get(base, base),
        "ss_v2": "True" if base == "sd2" else "False",
        "ss_resolution": "(1024, 1024)" if base in ("sdxl", "flux") else "(512, 512)",
        "ss_sd_model_name": base_model_name or {"sd1": "v1-5-pruned-emaonly.safetensors",
                                                "sd2": "v2-1_768-ema-pruned.safetensors",
                                                "sdxl": "sd_xl_base_1.0.safetensors",
                                                "flux": "flux1-dev.safetensors"}.get(base, ""),
        "ss_tag_frequency": json.dumps({f"10_{output_name}": dict(tags or {})}),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": _MODELSPEC.get(base, base),
        "modelspec.implementation": "https://github.com/kohya-ss/sd-scripts",
        "modelspec.title": title or output_name,
        "modelspec.resolution": "1024x1024" if base in ("sdxl", "flux") else "512x512",
    }
    if trigger:
        meta["modelspec.trigger_phrase"] = trigger
    if clip_skip is not None:
        meta["ss_clip_skip"] = str(clip_skip)
    return meta


def write_lora(path: str | os.PathLike, layout: str = "kohya", base: str = "sdxl", rank: int = 2,
               metadata: Mapping[str, str] | None = None, seed: int = 0) -> Path:
    """Write a LoRA safetensors file (atomically) and return its path."""
    from safetensors.torch import save

    from ..common.atomic import write_bytes_atomic

    return write_bytes_atomic(path, save(lora_tensors(layout, base, rank, seed), metadata=dict(metadata or {})))
