"""Tiny random-weight image encoders saved as real local folders (config.json + model.safetensors),
the way transformers' save_pretrained writes CLIP vision and DINOv2 models, for the consistency
tests: they exercise loading, cropping, embedding and calibration, not what the scores mean.

``comfy_clip_vision`` builds ComfyUI's own CLIP_VISION class (comfy.clip_vision.ClipVisionModel)
from a tiny config with these weights, as Load CLIP Vision would hand it to a node.
"""
from __future__ import annotations

import json
from pathlib import Path

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8}


def _save(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_dinov2(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    return _save(Dinov2Model(Dinov2Config(**TINY)), Path(folder))


def tiny_clip_vision(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return _save(CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY, projection_dim=16)), Path(folder))


def tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A whole CLIP (text and vision towers), as openai/clip-vit-* folders hold it."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 16}
    return _save(CLIPModel(CLIPConfig(text_config=text, vision_config=TINY, projection_dim=16)), Path(folder))


def comfy_clip_vision(folder: Path, seed: int = 0):
    """ComfyUI's ClipVisionModel (needs ComfyUI importable) with tiny_clip_vision's weights."""
    import comfy.clip_vision
    from safetensors.torch import load_file

    weights = tiny_clip_vision(folder / "weights", seed)
    config = folder / "comfy_config.json"
    config.write_text(json.dumps({**TINY, "projection_dim": 16, "hidden_act": "quick_gelu",
                                  "layer_norm_eps": 1e-5, "model_type": "clip_vision_model",
                                  "num_channels": 3}))
    model = comfy.clip_vision.ClipVisionModel(str(config))
    missing, unexpected = model.load_sd(load_file(weights / "model.safetensors"))
    assert not missing and not unexpected, (missing, unexpected)
    return model


def tiny_siglip_vision(folder: str | Path, seed: int = 0) -> Path:
    """SigLIP's vision tower alone (SiglipVisionModel, with its attention-pooling head), as
    InstantX's IP-Adapters read google/siglip-so400m-patch14-384."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    return _save(SiglipVisionModel(SiglipVisionConfig(**TINY)), Path(folder))
