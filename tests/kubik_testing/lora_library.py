"""A small LoRA library of real files: kohya and PEFT layouts for SD1.5 and SDXL, a FLUX.1
kohya file, real kohya/modelspec metadata, and the sidecars CivitAI Helper, Lora-Manager and
A1111 write. Used by the LoRA tests and the node tests (``library_dir`` fixtures)."""
from __future__ import annotations

import json
from pathlib import Path

from kubik_core.loras.synthetic import kohya_metadata, write_lora


def civitai_version(base: str, words: list[str], up: int = 0, down: int = 0, downloads: int = 0,
                    tags: list[str] | None = None, nsfw_level: int = 1, nsfw: bool = False) -> dict:
    """The shape of CivitAI's GET /model-versions/by-hash/{hash} answer (fields we read)."""
    return {"id": 123456, "modelId": 9876, "name": "v1.0", "baseModel": base, "trainedWords": words,
            "nsfwLevel": nsfw_level, "stats": {"downloadCount": downloads, "thumbsUpCount": up,
                                               "thumbsDownCount": down},
            "model": {"name": "Some LoRA", "type": "LORA", "nsfw": nsfw, "tags": tags or []},
            "files": [{"name": "x.safetensors", "primary": True, "hashes": {"AutoV2": "0000000000"}}],
            "images": []}


def build_library(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_lora(root / "sd15" / "watercolor_style.safetensors", "kohya", "sd1", metadata=kohya_metadata(
        "sd1", "watercolor_style", tags={"watercolor": 40, "painting": 30, "1girl": 5}, trigger="wtrclr"))
    write_lora(root / "sd15" / "peft_cat.safetensors", "peft", "sd1")
    write_lora(root / "xl" / "anime_lineart_xl.safetensors", "kohya", "sdxl", metadata=kohya_metadata(
        "sdxl", "anime_lineart", tags={"anime": 50, "lineart": 45, "1girl": 30}))
    write_lora(root / "xl" / "film_photo_xl.safetensors", "peft", "sdxl", seed=1)
    (root / "xl" / "film_photo_xl.civitai.info").write_text(json.dumps(civitai_version(
        "SDXL 1.0", ["analog film photo"], up=900, down=10, downloads=50000, tags=["photography", "film grain"])))
    (root / "xl" / "film_photo_xl.metadata.json").write_text(json.dumps({
        "file_name": "film_photo_xl", "model_name": "Analog Film", "base_model": "SDXL 1.0",
        "tags": ["photo"], "notes": "", "usage_tips": json.dumps({"strength": 0.7, "clip_strength": 0.6,
                                                                 "strength_min": 0.4, "strength_max": 0.9}),
        "user_field": "kept"}))
    write_lora(root / "xl" / "pony_cartoon.safetensors", "kohya", "sdxl", seed=2, metadata=kohya_metadata(
        "sdxl", "pony_cartoon", tags={"cartoon": 20}))
    (root / "xl" / "pony_cartoon.civitai.info").write_text(json.dumps(civitai_version("Pony", ["cartoon style"])))
    write_lora(root / "xl" / "castle_detail.safetensors", "kohya", "sdxl", seed=3)
    (root / "xl" / "castle_detail.json").write_text(json.dumps({
        "description": "castles", "sd version": "SDXL", "activation text": "gothic castle, towers",
        "preferred weight": 0.8, "negative text": "", "notes": "good for fantasy"}))
    (root / "xl" / "castle_detail.txt").write_text("my note")
    write_lora(root / "flux" / "flux_neon.safetensors", "kohya", "flux", metadata=kohya_metadata(
        "flux", "flux_neon", tags={"neon": 10}))
    return root
