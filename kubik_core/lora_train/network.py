"""LoRA layers through peft, and their export as a kohya-format LoRA file.

Keys are kohya's: ``lora_unet_<module path with _>``, and for the text encoders ``lora_te_``
(SD1.5's CLIP-L) or ``lora_te1_`` (CLIP-L) and ``lora_te2_`` (OpenCLIP bigG) for SDXL, each with
``.lora_down.weight`` (peft's A), ``.lora_up.weight`` (B) and ``.alpha`` (scale = alpha / rank, as
in peft). The UNet's module paths are the ones kohya's sd-scripts writes (KEY_STYLES "kohya"):
for SDXL the original (LDM) ones most SDXL LoRAs on CivitAI carry
(``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``), for SD1.5 the diffusers ones
(``lora_unet_down_blocks_0_attentions_0_...``); "diffusers" asks for diffusers paths whatever the
family. ComfyUI's comfy/lora.py maps both layouts, as do A1111/Forge.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
UNET_TARGETS_WIDE = UNET_TARGETS + ("proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
KEY_STYLES = ("kohya", "diffusers")
# The UNet's convolutions (LoCon, kohya's conv_dim): the ResNet blocks' 3x3 and 1x1 convolutions
# and the down- and upsamplers; they get their own rank and alpha.
UNET_CONV_TARGETS = ("conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv")
ADAPTER = "kubik"


def add_lora(module, rank: int, alpha: float, targets: tuple[str, ...], conv_rank: int = 0,
             conv_alpha: float = 1.0) -> None:
    """Wrap ``module``'s layers named by ``targets`` (suffixes of module paths) with trainable
    LoRA layers (peft; B starts at zero, so the model is unchanged until it trains); with
    ``conv_rank`` also the convolutions of UNET_CONV_TARGETS, at that rank and ``conv_alpha``."""
    from peft import LoraConfig, inject_adapter_in_model

    conv = UNET_CONV_TARGETS if conv_rank else ()
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets) + list(conv), init_lora_weights=True,
                        rank_pattern={name: conv_rank for name in conv},
                        alpha_pattern={name: conv_alpha for name in conv})
    inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(".lora_" in name)


def lora_parameters(module) -> dict:
    """Name -> trainable LoRA parameter of ``module``."""
    return {name: p for name, p in module.named_parameters() if ".lora_" in name}


def _kohya_key(prefix: str, path: str) -> str:
    """kohya's key for the module at ``path``. Text encoders use the classic transformers layout
    ``text_model.encoder.layers.N``; transformers 5's CLIPTextModel dropped the ``text_model``
    level, so it is put back (ComfyUI, A1111 and kohya all expect it)."""
    if prefix != "lora_unet" and not path.startswith("text_model."):
        path = f"text_model.{path}"
    return f"{prefix}_{path.replace('.', '_')}"


def kohya_state_dict(parts: dict, dtype, unet_names: dict | None = None) -> dict:
    """kohya keys for {prefix: module} (prefix lora_unet / lora_te1 / lora_te2), each module with
    its own alpha; with ``unet_names`` (diffusers module path -> original path) the UNet's keys
    use the original layout."""
    out = {}
    for prefix, module in parts.items():
        for name, tensor in module.state_dict().items():
            for peft_part, kohya_part in ((f".lora_A.{ADAPTER}.weight", "lora_down"),
                                          (f".lora_B.{ADAPTER}.weight", "lora_up")):
                if name.endswith(peft_part):
                    path = name[: -len(peft_part)]
                    layer_alpha = module.get_submodule(path).lora_alpha[ADAPTER]
                    if prefix == "lora_unet" and unet_names is not None:
                        path = unet_names[path]
                    key = _kohya_key(prefix, path)
                    out[f"{key}.{kohya_part}.weight"] = tensor.detach().to("cpu", dtype).contiguous()
                    out[f"{key}.alpha"] = _alpha(layer_alpha)
    return out


def _alpha(alpha: float):
    import torch

    return torch.tensor(float(alpha), dtype=torch.float32)


def load_kohya_into(parts: dict, tensors: dict) -> None:
    """Copy a kohya state dict written by :func:`kohya_state_dict` back into the peft layers
    (resume); a key that matches no layer is an error, since the settings must agree."""
    import torch

    with torch.no_grad():
        for prefix, module in parts.items():
            params = dict(module.named_parameters())
            for name, parameter in params.items():
                for peft_part, kohya_part in ((f".lora_A.{ADAPTER}.weight", "lora_down"),
                                              (f".lora_B.{ADAPTER}.weight", "lora_up")):
                    if name.endswith(peft_part):
                        key = f"{_kohya_key(prefix, name[: -len(peft_part)])}.{kohya_part}.weight"
                        parameter.copy_(tensors[key].to(parameter.dtype))


def serialize(tensors: dict, metadata: dict) -> bytes:
    """safetensors bytes, with kohya's sshs_model_hash (SHA-256 of the tensor data after the
    header, the AutoV3 hash CivitAI shows) added to ``metadata``."""
    from safetensors.torch import save

    plain = save(tensors, metadata={"format": "pt"})
    header = int.from_bytes(plain[:8], "little")
    data_hash = hashlib.sha256(plain[8 + header:]).hexdigest()
    return save(tensors, metadata=dict(metadata, sshs_model_hash=data_hash))


def training_metadata(settings: dict, family, *, steps: int, epoch: int, tag_frequency: dict, base_name: str,
                      base_sha256: str, buckets: dict, num_images: int, started: float) -> dict:
    """kohya's ss_* fields and SAI ModelSpec fields (string values, as safetensors wants);
    ``family`` (base_model.Family) names the base model's family as kohya and ModelSpec do."""
    resolution = settings["resolution"]
    trigger = settings.get("trigger") or ""
    title = settings["name"]
    meta = {
        "ss_network_module": "networks.lora", "ss_network_dim": str(settings["rank"]),
        "ss_network_alpha": str(float(settings["alpha"])),
        "ss_network_args": json.dumps({"unet_targets": list(settings["unet_targets"]),
                                       "train_text_encoder": settings["train_text_encoder"],
                                       "key_style": settings["key_style"],
                                       **({"ema_decay": settings["ema_decay"]} if settings["ema_decay"] else {}),
                                       **({"conv_dim": str(settings["conv_rank"]),
                                           "conv_alpha": str(float(settings["conv_alpha"]))}
                                          if settings["conv_rank"] else {})}),
        "ss_base_model_version": family.kohya_base_version, "ss_sd_model_name": base_name,
        "ss_new_sd_model_hash": base_sha256, "ss_resolution": f"({resolution}, {resolution})",
        "ss_steps": str(steps), "ss_max_train_steps": str(settings["steps"]), "ss_epoch": str(epoch),
        "ss_num_train_images": str(num_images), "ss_batch_size_per_device": str(settings["batch_size"]),
        "ss_gradient_accumulation_steps": str(settings["grad_accum"]),
        "ss_learning_rate": str(settings["lr"]), "ss_unet_lr": str(settings["lr"]),
        "ss_text_encoder_lr": str(settings["text_encoder_lr"] if settings["train_text_encoder"] else 0),
        "ss_lr_scheduler": settings["schedule"], "ss_lr_warmup_steps": str(settings["warmup"]),
        "ss_optimizer": settings["optimizer_name"], "ss_mixed_precision": settings["precision"],
        "ss_gradient_checkpointing": str(settings["gradient_checkpointing"]),
        "ss_noise_offset": str(settings["noise_offset"]), "ss_min_snr_gamma": str(settings["min_snr_gamma"]),
        "ss_caption_dropout_rate": str(settings["caption_dropout"]),
        "ss_shuffle_caption": str(settings["shuffle_tags"]), "ss_keep_tokens": str(settings["keep_tokens"]),
        "ss_num_repeats": str(settings["repeats"]), "ss_seed": str(settings["seed"]),
        "ss_cache_latents": "True", "ss_network_train_unet_only": str(not settings["train_text_encoder"]),
        "ss_tag_frequency": json.dumps({f"{settings['repeats']}_{title}": tag_frequency}),
        "ss_bucket_info": json.dumps({"buckets": {f"{w}x{h}": n for (w, h), n in sorted(buckets.items())}}),
        "ss_output_name": title, "ss_training_started_at": str(int(started)),
        "ss_training_finished_at": str(int(time.time())), "ss_training_comment": "trained with kubik lora train",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": family.architecture,
        "modelspec.implementation": family.implementation,
        "modelspec.title": title, "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": settings["prediction_type"],
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "modelspec.base_model_hash_sha256": base_sha256,
    }
    if trigger:
        meta["modelspec.trigger_phrase"] = trigger
    return meta


def sidecar(path: Path, data: bytes, trigger: str, settings: dict, family) -> dict:
    """ComfyUI-Lora-Manager's ``<name>.metadata.json`` for the written LoRA of ``family``."""
    return {
        "file_name": path.stem, "model_name": settings["name"], "file_path": path.name,
        "size": len(data), "modified": time.time(), "sha256": hashlib.sha256(data).hexdigest(),
        "base_model": family.civitai_base_model, "preview_url": "", "from_civitai": False,
        "tags": ["kubik-trained"], "notes": f"Trained with kubik lora train ({settings['steps']} steps, "
                                            f"rank {settings['rank']}).",
        "civitai": {"trainedWords": [trigger] if trigger else []},
        "usage_tips": json.dumps({"strength": 1.0}),
    }
