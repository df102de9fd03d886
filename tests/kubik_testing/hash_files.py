"""Real safetensors files for the hash tests, and the A1111 hashes computed independently of
kubik_core, straight from their definitions: Model hash = the first 10 hex digits of the SHA-256
of the whole checkpoint file; a LoRA's hash = the first 12 hex digits of the SHA-256 of the
bytes after the safetensors header (8 bytes of little-endian header length, then the header)."""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file


def independent_autov3(path: Path) -> str:
    data = path.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + header_length:]).hexdigest()[:12]


def independent_autov2(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def lora_file(path: Path, title: str = "castle", seed: int = 0) -> Path:
    """A kohya-style LoRA file (key layout and metadata as kohya's sd-scripts write them)."""
    generator = torch.Generator().manual_seed(seed)
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    tensors = {f"{base}.lora_down.weight": torch.randn(4, 320, generator=generator),
               f"{base}.lora_up.weight": torch.randn(320, 4, generator=generator),
               f"{base}.alpha": torch.tensor(4.0)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_output_name": title, "ss_network_dim": "4",
                                            "ss_base_model_version": "sdxl_base_v1-0"})
    return path


def checkpoint_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.randn(320, 4, 3, 3),
               "first_stage_model.decoder.conv_out.bias": torch.zeros(3)}, str(path),
              metadata={"modelspec.title": "test checkpoint"})
    return path
