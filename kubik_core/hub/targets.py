"""Where a download may land: model folders only, and only files in a model format.

A download writes a file whose name and bytes come from a remote server (or a web request), so
the target must never be a place from which ComfyUI runs code: not ``custom_nodes`` (a ``.py``
there is imported on the next start), not any folder registered for something other than model
files (``configs``, ``diffusers``), and never a file type that is code. Every caller (the
``/kubik/hub/download`` route, the Kubik Model Download node, ``kubik hub download``) goes
through the same allow-list:

* the folder's own listed extensions, kept only where they are model formats we know;
* pickle-based formats (``.ckpt .pt .pt2 .pth .bin``) only where the folder really lists them;
* a folder that lists no extension at all gets the safe formats (``.safetensors .sft .gguf``);
* anything else (``.py``, ``.pkl``, ``.yaml``, ``.zip`` ...) is never written.
"""
from __future__ import annotations

import os
from typing import Iterable

from .errors import UnsafeFilename

# Formats that hold data only: loading them runs no code.
SAFE_MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf")
# Pickle-based PyTorch formats: written only into folders that list them.
LEGACY_MODEL_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".pth", ".bin")
# Other model formats some packs' folders list.
OTHER_MODEL_EXTENSIONS = (".onnx",)
MODEL_EXTENSIONS = SAFE_MODEL_EXTENSIONS + LEGACY_MODEL_EXTENSIONS + OTHER_MODEL_EXTENSIONS

# folder_paths kinds that never hold single model files.
NOT_MODEL_KINDS = frozenset({"custom_nodes", "configs", "diffusers"})

# ComfyUI 0.8.0's folders of single model files, the most used first. Each lists
# folder_paths.supported_pt_extensions; outside ComfyUI this is what `--kind` accepts.
COMFYUI_MODEL_KINDS = (
    "loras", "checkpoints", "embeddings", "controlnet", "vae", "upscale_models",
    "diffusion_models", "text_encoders", "clip_vision", "style_models", "hypernetworks",
    "gligen", "photomaker", "vae_approx", "model_patches", "audio_encoders",
    "latent_upscale_models",
)
COMFYUI_PT_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl",
                                   ".sft"})
# The pack's own folders (registered or widened by the pack, .safetensors only).
PACK_MODEL_KINDS = ("classifiers", "kubik3d")


def allowed_extensions(listed: Iterable[str]) -> tuple[str, ...]:
    """The extensions a download into a folder listing ``listed`` may have (sorted).

    Empty when the folder lists only things that are not model files (``.yaml``, ``folder``).
    """
    listed = {str(ext).lower() for ext in listed if ext}
    if not listed:
        return SAFE_MODEL_EXTENSIONS
    return tuple(sorted(listed & set(MODEL_EXTENSIONS)))


def check_extension(name: str, allowed: Iterable[str]) -> None:
    """Raise UnsafeFilename unless ``name`` ends with one of ``allowed``."""
    allowed = tuple(allowed)
    if not name.lower().endswith(allowed):
        raise UnsafeFilename(f"file name {name[:120]!r}: this model folder takes only "
                             f"{', '.join(allowed)} files; pass a file name with one of these "
                             "extensions")


def model_target(kind: str, paths: list[str], listed: Iterable[str],
                 code_folders: Iterable[str] = ()) -> tuple[str, tuple[str, ...]]:
    """(folder to download into, allowed extensions) for a model kind, or ValueError.

    ``paths`` are the kind's folders (the first is where downloads go), ``listed`` its
    extensions, ``code_folders`` the folders ComfyUI imports code from (custom_nodes): a kind
    whose folder lies inside one of them is not a download target.
    """
    if kind in NOT_MODEL_KINDS:
        raise ValueError(f"kind: {kind!r} is not a model folder")
    if not paths:
        raise ValueError(f"kind: ComfyUI has no folder configured for {kind!r}")
    extensions = allowed_extensions(listed)
    if not extensions:
        raise ValueError(f"kind: {kind!r} does not hold model files")
    folder = os.path.realpath(paths[0])
    for code in code_folders:
        code = os.path.realpath(code)
        if os.path.commonpath([folder, code]) == code:
            raise ValueError(f"kind: the {kind!r} folder lies inside a custom_nodes folder, "
                             "where downloads are not allowed")
    return paths[0], extensions


def cli_extensions(kind: str | None) -> tuple[str, ...]:
    """The allow-list of ``kubik hub download`` (outside ComfyUI): a ComfyUI kind's formats, or
    every model format when no kind is given."""
    if kind is None:
        return MODEL_EXTENSIONS
    if kind in PACK_MODEL_KINDS:
        return (".safetensors",)
    if kind not in COMFYUI_MODEL_KINDS:
        raise ValueError(f"--kind {kind!r}: not a ComfyUI model folder; choose one of "
                         f"{', '.join(COMFYUI_MODEL_KINDS + PACK_MODEL_KINDS)}")
    return allowed_extensions(COMFYUI_PT_EXTENSIONS)
