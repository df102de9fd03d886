"""Read a safetensors header without touching the tensors.

Layout (huggingface/safetensors): 8 bytes little-endian u64 = header length N, then N bytes of
UTF-8 JSON ``{tensor name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}``, then the tensor data. Only the header is read, with bounds checks so a hostile
or truncated file costs at most MAX_HEADER_BYTES of memory and never a crash.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import LoraFileError

# ComfyUI-Lora-Manager caps the header at 64 MiB, ComfyUI at 100 MiB; real LoRA headers are
# a few hundred KiB (ss_tag_frequency can be large).
MAX_HEADER_BYTES = 64 * 1024 * 1024


@dataclass
class SafetensorsHeader:
    """The parsed header: string metadata and per-tensor dtype and shape."""

    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    header_bytes: int = 0        # N, the JSON length; tensor data starts at 8 + N
    data_bytes: int = 0          # end of the last tensor, as the header declares it
    problems: list[str] = field(default_factory=list)  # non-fatal oddities, for the user


def read_header(path: str | os.PathLike, file_size: int | None = None) -> SafetensorsHeader:
    """Parse the header of ``path``; raise LoraFileError naming the problem if it is broken."""
    try:
        with open(path, "rb") as handle:
            size = file_size if file_size is not None else os.fstat(handle.fileno()).st_size
            return _parse(handle, size, os.fspath(path))
    except OSError as exc:
        raise LoraFileError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from exc


def _parse(handle: BinaryIO, size: int, name: str) -> SafetensorsHeader:
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise LoraFileError(f"{name}: truncated safetensors file ({size} bytes, no header length)")
    (length,) = struct.unpack("<Q", prefix)
    if length == 0 or length > MAX_HEADER_BYTES:
        raise LoraFileError(f"{name}: header length {length} is not plausible (limit "
                            f"{MAX_HEADER_BYTES}); not a safetensors file?")
    if 8 + length > size:
        raise LoraFileError(f"{name}: header length {length} runs past the end of the file "
                            f"({size} bytes): the file is truncated")
    raw = handle.read(length)
    if len(raw) < length:
        raise LoraFileError(f"{name}: truncated while reading the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoraFileError(f"{name}: header is not valid UTF-8 (byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise LoraFileError(f"{name}: header is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise LoraFileError(f"{name}: header is JSON but not an object")

    header = SafetensorsHeader(header_bytes=length)
    raw_meta = data.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict):
        header.problems.append("__metadata__ is not an object; ignored")
        raw_meta = {}
    for key, value in raw_meta.items():
        if isinstance(value, str):
            header.metadata[str(key)] = value
        else:  # the format says strings only; some tools write numbers
            header.metadata[str(key)] = json.dumps(value)
    end = 0
    for tensor, info in data.items():
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            begin, stop = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise LoraFileError(f"{name}: tensor {tensor!r} has a malformed header entry") from None
        if not 0 <= begin <= stop:
            raise LoraFileError(f"{name}: tensor {tensor!r} has invalid data offsets")
        header.tensors[tensor] = (dtype, shape)
        end = max(end, stop)
    header.data_bytes = end
    if 8 + length + end > size:
        raise LoraFileError(f"{name}: tensor data ends at byte {8 + length + end} but the file has "
                            f"{size} bytes: the file is truncated")
    return header


def data_start(header: SafetensorsHeader) -> int:
    """Offset of the first tensor byte (where CivitAI's AutoV3 hash starts)."""
    return 8 + header.header_bytes
