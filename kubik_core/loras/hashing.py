"""Model file hashes as CivitAI and A1111 use them.

* SHA-256 of the whole file; CivitAI's AutoV2 is its first 10 hex digits (A1111 writes it in
  ``Lora hashes`` of the PNG ``parameters`` text, CivitAI resolves it to the model version).
* AutoV3: SHA-256 of the tensor data only (everything after the safetensors header), first 12
  hex digits; kohya stores the full digest as ``sshs_model_hash``. It survives metadata edits.

Hashing reads the whole file, so the library computes it in a background thread and caches the
result with the file's size and modification time (library.py).
"""
from __future__ import annotations

import hashlib
import os

from ..common.files import open_regular

CHUNK = 1024 * 1024
# The SHA-256 of zero bytes; a file that hashes to it is empty, never a model
# (ComfyUI-Lora-Manager rejects it as well).
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sha256_file(path: str | os.PathLike, start: int = 0, cancel=None) -> str:
    """Hex SHA-256 of ``path`` from byte ``start`` to the end.

    ``cancel``: optional callable returning True to stop early (raises InterruptedError).
    """
    digest = hashlib.sha256()
    with open_regular(path) as handle:  # a file swapped for a FIFO must not hang the hashing thread
        handle.seek(start)
        while True:
            if cancel is not None and cancel():
                raise InterruptedError(f"hashing {os.fspath(path)} cancelled")
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def autov2(sha256: str) -> str:
    """CivitAI AutoV2: the first 10 hex digits of the full-file SHA-256."""
    return sha256[:10].lower()


def autov3(tensor_sha256: str) -> str:
    """CivitAI AutoV3: the first 12 hex digits of the SHA-256 of the tensor data."""
    return tensor_sha256[:12].lower()
