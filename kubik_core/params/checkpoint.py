"""Which checkpoint file feeds a node, and what its safetensors header says.

ComfyUI hands a node its MODEL, not the file it came from, yet Pony, Illustrious, Turbo and
Lightning checkpoints load as plain SDXL and can only be told apart by name and metadata. The
node therefore receives the API prompt (hidden input PROMPT) and its own id (UNIQUE_ID): we
follow its "model" input upstream, through nodes that pass a model on (LoraLoader,
ModelSamplingDiscrete, ...), to the loader that names a file in "ckpt_name" (CheckpointLoader*)
or "unet_name" (UNETLoader), and read only that file's header.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Mapping

# Loader input that names the file -> ComfyUI model folder it is looked up in.
FILE_INPUTS = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models"}
MAX_HEADER_BYTES = 64 * 2**20  # a checkpoint header is ~0.2 MB; same bound as LoRA Manager
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


def read_safetensors_metadata(path: str, max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, str]:
    """The ``__metadata__`` strings of a .safetensors file, reading only its header.

    Raises ValueError naming the file when it is not a readable safetensors file; returns {}
    for other formats (.ckpt, .gguf), which carry no such header.
    """
    if not str(path).lower().endswith(".safetensors"):
        return {}
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"checkpoint {path}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > max_header_bytes:
            raise ValueError(f"checkpoint {path}: header claims {length} bytes, more than the "
                             f"{max_header_bytes} allowed; the file is corrupt or not safetensors")
        raw = handle.read(length)
    if len(raw) < length:
        raise ValueError(f"checkpoint {path}: header is cut short ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint {path}: header is not valid JSON ({exc})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def _input(prompt: Mapping[str, Any], node_id: str, name: str) -> Any:
    node = prompt.get(node_id)
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    return inputs.get(name) if isinstance(inputs, Mapping) else None


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], (str, int))
