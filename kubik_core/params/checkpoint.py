"""Which checkpoint file feeds a node, and what its safetensors header says.

ComfyUI hands a node its MODEL, not the file it came from, yet Pony, Illustrious, Turbo and
Lightning checkpoints load as plain SDXL and can only be told apart by name and metadata. The
node therefore receives the API prompt (hidden input PROMPT) and its own id (UNIQUE_ID): we
follow its "model" input upstream, through nodes that pass a model on (LoraLoader,
ModelSamplingDiscrete, ...), to the loader that names a file in "ckpt_name" (CheckpointLoader*)
or "unet_name" (UNETLoader), and read only that file's header.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import CheckpointFileError

# Loader input that names the file -> ComfyUI model folder it is looked up in.
FILE_INPUTS = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models"}
_MAX_HOPS = 256


@dataclass(frozen=True)
class CheckpointRef:
    folder: str   # ComfyUI model folder name ("checkpoints", "diffusion_models")
    name: str     # file name relative to that folder, as the loader widget holds it
    node_id: str  # the loader node


def find_checkpoint(prompt: Mapping[str, Any] | None, node_id: Any, input_name: str = "model") -> CheckpointRef | None:
    """The file behind ``node_id``'s ``input_name`` link in an API-format prompt, or None."""
    if not isinstance(prompt, Mapping) or node_id is None:
        return None
    link = _input(prompt, str(node_id), input_name)
    seen: set[str] = set()
    while _is_link(link) and len(seen) < _MAX_HOPS:
        upstream = str(link[0])
        if upstream in seen:
            return None  # a cycle: not a valid graph
        seen.add(upstream)
        node = prompt.get(upstream)
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            return None
        for key, folder in FILE_INPUTS.items():
            if isinstance(inputs.get(key), str):
                return CheckpointRef(folder, inputs[key], upstream)
        link = inputs.get("model")
    return None


def read_safetensors_metadata(path: str | os.PathLike, name: str | None = None) -> dict[str, str]:
    """The ``__metadata__`` strings of a .safetensors file, reading only its header.

    Uses the bounded header reader (kubik_core.common.safetensors_file), so a crafted header (nested 1,000 levels,
    1e999, absurd shapes, a FIFO in place of the file) is one error, never a crash. Raises
    CheckpointFileError naming the file as ``name`` (default: ``path``) when it is not a
    readable safetensors file; returns {} for other formats (.ckpt, .gguf), which carry no such
    header.
    """
    if not os.fspath(path).lower().endswith(".safetensors"):
        return {}
    from ..common.safetensors_file import SafetensorsFileError, read_header

    name = os.fspath(path) if name is None else name
    try:
        return read_header(path, name).metadata
    except SafetensorsFileError as exc:
        raise CheckpointFileError(name, exc.reason) from None


def _input(prompt: Mapping[str, Any], node_id: str, name: str) -> Any:
    node = prompt.get(node_id)
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    return inputs.get(name) if isinstance(inputs, Mapping) else None


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], (str, int))
