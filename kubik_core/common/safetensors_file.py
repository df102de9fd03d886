"""Read safetensors files whose writer is not trusted; every problem is one SafetensorsFileError.

``read_header`` parses the header without touching the tensors; ``open_safetensors`` opens the
file with the safetensors library (to read tensors) and turns its errors into the same error.

Layout (huggingface/safetensors): 8 bytes little-endian u64 = header length N, then N bytes of
UTF-8 JSON ``{tensor name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}``, then the tensor data. The header is written by whoever made the file, so it is
read as hostile: at most MAX_HEADER_BYTES, parsed with kubik_core.common.bounded_json (bounded
nesting, finite numbers), every tensor entry checked for type, and its declared size checked
against its data offsets and the file, so that a broken or crafted file is one
SafetensorsFileError naming what is wrong, never a crash.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .bounded_json import BoundedJSONError
from .bounded_json import loads as bounded_loads
from .files import open_regular


class SafetensorsFileError(ValueError):
    """A safetensors file that cannot be read (truncated, bad header, not safetensors ...).

    ``file`` is the name the caller gave (a path, or a name relative to a model folder) and
    ``reason`` the problem alone, so that a caller can record it against the file without
    repeating the name, or word it for its own input.
    """

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


# ComfyUI-Lora-Manager caps the header at 64 MiB, ComfyUI at 100 MiB; real LoRA headers are
# a few hundred KiB (ss_tag_frequency can be large).
MAX_HEADER_BYTES = 64 * 1024 * 1024
# Real tensors have at most 5 dimensions (3D convolutions); the bound keeps size arithmetic small.
MAX_DIMENSIONS = 16
# Bits per element of safetensors' dtypes (safetensors/src/tensor.rs Dtype::bitsize).
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "F64": 64, "I64": 64, "U64": 64,
}


@dataclass
class SafetensorsHeader:
    """The parsed header: string metadata and per-tensor dtype and shape."""

    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    header_bytes: int = 0        # N, the JSON length; tensor data starts at 8 + N
    data_bytes: int = 0          # end of the last tensor, as the header declares it
    problems: list[str] = field(default_factory=list)  # non-fatal oddities, for the user

    @property
    def data_start(self) -> int:
        """Offset of the first tensor byte (where CivitAI's AutoV3 hash starts)."""
        return 8 + self.header_bytes


def read_header(path: str | os.PathLike, name: str | None = None) -> SafetensorsHeader:
    """Parse the header of ``path``; raise SafetensorsFileError naming the problem if it is broken.

    ``name``: how the file is named in errors (default: ``path``); nodes pass the name relative
    to the model folder so that no absolute server path reaches a message.
    """
    name = os.fspath(path) if name is None else name
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 8:  # also every /proc file (size 0): nothing is read from it
                raise SafetensorsFileError(name, f"truncated safetensors file ({size} bytes, no header length)")
            length = int.from_bytes(handle.read(8), "little")
            if length == 0 or length > MAX_HEADER_BYTES:
                raise SafetensorsFileError(name, f"header length {length} is not plausible (limit "
                                          f"{MAX_HEADER_BYTES}); not a safetensors file?")
            if 8 + length > size:
                raise SafetensorsFileError(name, f"header length {length} runs past the end of the file "
                                          f"({size} bytes): the file is truncated")
            raw = handle.read(length)
    except OSError as exc:
        raise SafetensorsFileError(name, f"cannot read ({exc.strerror or exc})") from None
    if len(raw) < length:
        raise SafetensorsFileError(name, "truncated while reading the header")
    return _parse(raw, size, name)


def _parse(raw: bytes, size: int, name: str) -> SafetensorsHeader:
    try:
        data = bounded_loads(raw, max_bytes=MAX_HEADER_BYTES)
    except BoundedJSONError as exc:
        raise SafetensorsFileError(name, f"unreadable header: {exc}") from None
    if not isinstance(data, dict):
        raise SafetensorsFileError(name, "header is JSON but not an object")

    header = SafetensorsHeader(header_bytes=len(raw))
    raw_meta = data.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict):
        header.problems.append("__metadata__ is not an object; ignored")
        raw_meta = {}
    for key, value in raw_meta.items():
        # The format says strings only; some tools write numbers or objects (bounded, finite).
        header.metadata[key] = value if isinstance(value, str) else json.dumps(value)
    spans = []
    unknown_dtypes = set()
    for tensor, info in data.items():
        dtype, shape, begin, stop = _tensor_entry(tensor, info, name)
        bits = DTYPE_BITS.get(dtype)
        if bits is None:
            unknown_dtypes.add(dtype)
        elif -(-math.prod(shape) * bits // 8) != stop - begin:
            raise SafetensorsFileError(name, f"tensor {_short(tensor)} declares {_short(dtype)} "
                                      f"{_dims(shape)} ({_count(-(-math.prod(shape) * bits // 8))} "
                                      f"bytes) but its data_offsets span {stop - begin} bytes")
        header.tensors[tensor] = (dtype, shape)
        if stop > begin:
            spans.append((begin, stop, tensor))
    if unknown_dtypes:
        header.problems.append("unknown dtype " + ", ".join(_short(d) for d in sorted(unknown_dtypes)[:3])
                               + ": those tensors' sizes were not checked")
    spans.sort()
    for (_b1, stop1, first), (begin2, _s2, second) in zip(spans, spans[1:]):
        if begin2 < stop1:
            raise SafetensorsFileError(name, f"tensors {_short(first)} and {_short(second)} overlap "
                                      "(their data_offsets share bytes)")
    header.data_bytes = max((stop for _b, stop, _t in spans), default=0)
    if 8 + len(raw) + header.data_bytes > size:
        raise SafetensorsFileError(name, f"tensor data ends at byte {8 + len(raw) + header.data_bytes} but "
                                  f"the file has {size} bytes: the file is truncated")
    return header


def _tensor_entry(tensor: str, info, name: str) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, stop) of one header entry, each checked for type and range."""
    def bad(what: str) -> SafetensorsFileError:
        return SafetensorsFileError(name, f"tensor {_short(tensor)} has a malformed header entry ({what})")

    if not isinstance(info, dict):
        raise bad("not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad("dtype is not text")
    if not isinstance(shape, list) or not all(_whole(d) and d >= 0 for d in shape):
        raise bad("shape is not a list of whole numbers >= 0")
    if len(shape) > MAX_DIMENSIONS:
        raise bad(f"{len(shape)} dimensions, more than {MAX_DIMENSIONS}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(o) for o in offsets):
        raise bad("data_offsets is not [begin, end]")
    begin, stop = offsets
    if not 0 <= begin <= stop:
        raise bad(f"data_offsets [{begin}, {stop}] do not run forwards from 0")
    return dtype, tuple(shape), begin, stop


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(number: int) -> str:
    return str(number) if number < 10**20 else "more than 10^20"


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(_count(d) for d in shape) + "]"


def _short(text: str, limit: int = 60) -> str:
    """A tensor name or dtype as it can appear in a one-line message (quoted, cut, escaped)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


@contextmanager
def open_safetensors(path: str | os.PathLike, name: str | None = None) -> Iterator:
    """``safetensors.safe_open(path, framework="pt")``, its errors raised as SafetensorsFileError
    naming the file as ``name`` (default: ``path``)."""
    from safetensors import safe_open

    name = os.fspath(path) if name is None else name
    try:
        handle = safe_open(os.fspath(path), framework="pt")
    except OSError as exc:
        raise SafetensorsFileError(name, f"cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise SafetensorsFileError(name, f"not a readable safetensors file ({_one_line(exc)})") from None
    with handle:
        yield handle


def load_tensors(path: str | os.PathLike, name: str | None = None) -> dict:
    """``safetensors.torch.load_file(path)``, its errors (a file cut short or changed since its header
    was checked, a damaged one) raised as SafetensorsFileError naming the file as ``name``."""
    from safetensors.torch import load_file

    name = os.fspath(path) if name is None else name
    try:
        return load_file(os.fspath(path))
    except OSError as exc:
        raise SafetensorsFileError(name, f"cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # safetensors' own SafetensorError is no OSError or ValueError
        raise SafetensorsFileError(name, f"not a readable safetensors file ({_one_line(exc)})") from None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
