"""Real textual-inversion embedding files for tests, in the layouts ComfyUI loads
(comfy/sd1_clip.py load_embed): A1111's ``emb_params`` [n, 768] for SD1.x, [n, 1024] for SD2.x,
and SDXL's ``clip_l`` [n, 768] + ``clip_g`` [n, 1280] pair; CivitAI ``.civitai.info`` sidecars."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_embedding(path: Path, kind: str, vectors: int = 4, civitai: dict | None = None) -> Path:
    """An embedding of ``kind`` sd1 / sd2 / sdxl with random vectors (seeded by its name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(len(path.name))
    if kind == "sdxl":
        tensors = {"clip_l": torch.randn(vectors, 768, generator=gen),
                   "clip_g": torch.randn(vectors, 1280, generator=gen)}
    else:
        tensors = {"emb_params": torch.randn(vectors, {"sd1": 768, "sd2": 1024}[kind], generator=gen)}
    save_file(tensors, str(path))
    if civitai is not None:
        sidecar = path.with_name(path.name.rpartition(".")[0] + ".civitai.info")
        sidecar.write_text(json.dumps(civitai), encoding="utf-8")
    return path


def build_embedding_library(root: Path) -> Path:
    """The embeddings folder most tests use: negatives and positives for SD1.5 and SDXL/Pony."""
    write_embedding(root / "EasyNegative.safetensors", "sd1", 8,
                    {"baseModel": "SD 1.5", "stats": {"downloadCount": 900000},
                     "model": {"name": "EasyNegative", "tags": ["negative"]}})
    write_embedding(root / "badhandv4.safetensors", "sd1", 6, {"baseModel": "SD 1.5",
                                                               "stats": {"downloadCount": 500000}})
    write_embedding(root / "CharTurnerV2.safetensors", "sd1", 2,
                    {"baseModel": "SD 1.5", "trainedWords": ["charturnerv2"]})
    write_embedding(root / "negativeXL_D.safetensors", "sdxl", 4)
    write_embedding(root / "unaestheticXLv31.safetensors", "sdxl", 2, {"baseModel": "SDXL 1.0",
                                                                      "stats": {"downloadCount": 80000}})
    write_embedding(root / "pony" / "zPDXL3.safetensors", "sdxl", 4,
                    {"baseModel": "Pony", "trainedWords": ["zPDXL3"],
                     "model": {"name": "Pony quality negative", "tags": ["negative embedding"]}})
    write_embedding(root / "sd2" / "rev2-badprompt.safetensors", "sd2", 4)
    return root
