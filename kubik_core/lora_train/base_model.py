"""The base model a LoRA is trained on, one class per family (SD1.5, SDXL), so the training loop,
the sampler and the LoRA file's metadata stay one code path.

A family differs in what the loop asks of it: its text encoders (SD1.5: CLIP-L, kohya prefix
``lora_te``; SDXL: CLIP-L and OpenCLIP bigG, ``lora_te1``/``lora_te2``), how a caption becomes
conditioning (SD1.5: CLIP-L's last hidden state, as kohya and ComfyUI use it; SDXL: both
encoders' penultimate states side by side and bigG's pooled output), what the UNet takes besides
(SDXL: the pooled vector and the size conditioning), its default bucket resolution, and the names
the LoRA file records (kohya's ``ss_base_model_version``, ModelSpec's architecture, CivitAI's
base model). kohya's own key layout for the UNet differs too: sd-scripts trains SD1.x on a
diffusers-layout UNet (``lora_unet_down_blocks_0_attentions_0_...``) and SDXL on the original
layout (``lora_unet_input_blocks_4_1_...``); ComfyUI, A1111 and Forge map both.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import FAMILY_NAMES, CheckpointError, inspect_checkpoint
from ..checkpoints.vae import encode_latents

SUPPORTED = "kubik lora train trains LoRAs for SD1.5 and SDXL (incl. Pony and Illustrious) single-file checkpoints"


@dataclass(frozen=True)
class Family:
    """What a LoRA of one base family is called and trained at."""

    name: str                     # kubik_core.checkpoints' family name: "sd15" or "sdxl"
    label: str                    # for people
    default_resolution: int       # bucket area is this squared (the family's native size)
    kohya_base_version: str       # kohya's ss_base_model_version
    architecture: str             # SAI ModelSpec modelspec.architecture of the LoRA
    implementation: str           # modelspec.implementation, as kohya writes it for this family
    civitai_base_model: str       # the Lora-Manager sidecar's base_model (CivitAI's baseModel)
    kohya_original_unet_names: bool   # kohya's layout: original (LDM) module paths, else diffusers'


SD15 = Family("sd15", "SD1.5", 512, "sd_v1", "stable-diffusion-v1/lora", "diffusers", "SD 1.5", False)
SDXL = Family("sdxl", "SDXL", 1024, "sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora",
              "https://github.com/Stability-AI/generative-models", "SDXL 1.0", True)
FAMILIES = {family.name: family for family in (SD15, SDXL)}


def detect_family(path: str | os.PathLike) -> Family:
    """The family of the base checkpoint ``path``, from its header (nothing is loaded); another
    family is one line naming the file, what it holds, and what is supported."""
    info = inspect_checkpoint(path, "--base")
    if info.family not in FAMILIES:
        raise CheckpointError(f"--base {Path(path).name}: the checkpoint holds {FAMILY_NAMES[info.family]}; "
                              f"{SUPPORTED}")
    return FAMILIES[info.family]


class BaseModel(ABC):
    """The parts training uses (diffusers / transformers modules, float32) and the family's ways."""

    family: Family

    def __init__(self, parts):
        self.unet, self.vae, self.scheduler = parts.unet, parts.vae, parts.scheduler
        self.prediction_type = parts.prediction_type
        self.parts = parts

    @property
    @abstractmethod
    def text_encoders(self) -> dict:
        """kohya key prefix -> text encoder."""

    def modules(self) -> list:
        return [self.unet, self.vae, *self.text_encoders.values()]

    def encode_latents(self, pixels):
        """Scaled latents of ``pixels`` ([B, 3, H, W] in -1..1) as the UNet sees them."""
        return encode_latents(self.vae, pixels)

    @abstractmethod
    def encode_text(self, captions: list[str], device):
        """(hidden states [B, 77, C], pooled [B, P] or None) for ``captions``."""

    @abstractmethod
    def predict(self, noisy, t, hidden_states, pooled, size_conditions):
        """The UNet's output; ``size_conditions`` [B, 6] is SDXL's (original size, crop, target size)."""


class SD15BaseModel(BaseModel):
    family = SD15

    @property
    def text_encoders(self) -> dict:
        return {"lora_te": self.parts.text_encoder}

    def encode_text(self, captions, device):
        tokenizer = self.parts.tokenizer
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(device)
        return self.parts.text_encoder(ids)[0], None

    def predict(self, noisy, t, hidden_states, pooled, size_conditions):
        return self.unet(noisy, t, encoder_hidden_states=hidden_states).sample


class SDXLBaseModel(BaseModel):
    family = SDXL

    @property
    def unet_original_names(self) -> dict:
        """diffusers UNet module path -> original path: kohya's SDXL key layout."""
        return self.parts.unet_original_names

    @property
    def text_encoders(self) -> dict:
        return {"lora_te1": self.parts.text_encoder, "lora_te2": self.parts.text_encoder_2}

    def encode_text(self, captions, device):
        import torch

        states, pooled = [], None
        parts = self.parts
        for tokenizer, encoder in ((parts.tokenizer, parts.text_encoder), (parts.tokenizer_2, parts.text_encoder_2)):
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(device)
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            if encoder is parts.text_encoder_2:
                pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
        return torch.cat(states, dim=-1), pooled

    def predict(self, noisy, t, hidden_states, pooled, size_conditions):
        return self.unet(noisy, t, encoder_hidden_states=hidden_states,
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": size_conditions}).sample


def load_base_model(path: str | os.PathLike, family: Family, tokenizer_dir: str | None = None) -> BaseModel:
    """The base checkpoint ``path`` of ``family`` (from :func:`detect_family`), offline."""
    from ..checkpoints import load_sd15, load_sdxl

    if family is SD15:
        return SD15BaseModel(load_sd15(path, tokenizer_dir, "--base"))
    return SDXLBaseModel(load_sdxl(path, tokenizer_dir, "--base"))
