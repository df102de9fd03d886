"""CLIP's tokenizer files, found locally: the pack never downloads them.

The vocab.json + merges.txt pair is the same for SD1.x's CLIP-L and both SDXL text encoders. It
comes from ``--tokenizer``, else from the ComfyUI this pack is installed in
(``comfy/sd1_tokenizer``), else from ``$COMFYUI_DIR``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .layout import CheckpointError

MAX_TOKENS = 77


def find_tokenizer(explicit: str | None) -> Path:
    """The folder with CLIP's vocab.json and merges.txt (see the module docstring)."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    # <ComfyUI>/custom_nodes/<pack>/kubik_core/checkpoints/tokenizer.py
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


def clip_tokenizer(folder: Path, pad_token: str | None = None):
    """transformers' CLIPTokenizer from ``folder`` (77 tokens); SDXL's OpenCLIP pads with "!"."""
    from transformers import CLIPTokenizer

    extra = {"pad_token": pad_token} if pad_token else {}
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS,
                         **extra)
