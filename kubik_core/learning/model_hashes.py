"""The checkpoint's and the LoRAs' hashes for the A1111 ``parameters`` text, so that CivitAI
links the resources, without hashing multi-GB files on every save.

What A1111 writes (and CivitAI looks up):

* ``Model hash``: the checkpoint's short hash, the first 10 hex digits of the SHA-256 of the
  whole file (A1111 modules/sd_models.py ``CheckpointInfo``: ``sha256[0:10]``; CivitAI's AutoV2).
* ``Lora hashes``: ``name: hash`` per LoRA, the hash being the first 12 hex digits of the
  SHA-256 of everything after the safetensors header, i.e. from byte 8 + the header length
  stored little-endian in the first 8 bytes (A1111 modules/hashes.py
  ``addnet_hash_safetensors``, used for .safetensors files by extensions-builtin/Lora/network.py,
  ``shorthash = hash[0:12]``; CivitAI's AutoV3). It does not change when only the metadata
  does. For other LoRA files A1111 hashes the whole file, and so do we.

Hashes are kept in one JSON file (``file_hashes.json`` in Kubik's cache folder, written
atomically), keyed by absolute path with the file's size and modification time in ns: an
unchanged file is never read again, a changed one is hashed again. A file of at most
INLINE_BYTES (any LoRA) is hashed when first asked for; a larger one (a checkpoint) by one
background thread, so saving an image never waits for gigabytes: Kubik Parameter Optimizer
starts it when it reads the checkpoint, and until it is done the images carry no Model hash.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

from ..common.atomic import write_text_atomic
from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads
from ..common.paths import cache_dir
from ..common.files import open_regular

log = logging.getLogger(__name__)

CACHE_FILE_NAME = "file_hashes.json"
INLINE_BYTES = 512 * 1024 * 1024       # hashed on the spot (about a second at most)
MAX_CACHE_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 100_000
_CHUNK = 1024 * 1024
_KINDS = ("file", "tensors")           # SHA-256 of the whole file / of the tensor data
_HEX = frozenset("0123456789abcdef")


def default_cache_dir() -> Path:
    """$KUBIK_CACHE_DIR, else $XDG_CACHE_HOME/kubik, else ~/.cache/kubik (as the LoRA index)."""
    return cache_dir()


def tensor_data_offset(head: bytes, size: int) -> int | None:
    """Where a safetensors file's tensor data starts (8 + header length), or None when the first
    8 bytes do not describe a header that fits in a file of ``size`` bytes."""
    if len(head) < 8:
        return None
    offset = 8 + int.from_bytes(head[:8], "little")
    return offset if offset <= size else None


def sha256_of(path: str | os.PathLike, kind: str) -> str:
    """Hex SHA-256 of the whole file (``kind="file"``), or of its tensor data (``"tensors"``:
    after the safetensors header for .safetensors files, the whole file otherwise).

    Raises OSError for a file that cannot be read (FIFOs and devices are refused without
    waiting) and ValueError for a .safetensors file whose header length does not fit.
    """
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        start = 0
        if kind == "tensors" and os.fspath(path).lower().endswith(".safetensors"):
            start = tensor_data_offset(handle.read(8), size)
            if start is None:
                raise ValueError("not a safetensors file (its header length does not fit the file)")
        handle.seek(start)
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """File hashes by absolute path, valid while the file's size and mtime are unchanged."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / CACHE_FILE_NAME
        self._lock = threading.Lock()
        self._entries = self._load()
        self._queue: deque[tuple[str, str]] = deque()
        self._worker: threading.Thread | None = None

    def get(self, path: str | os.PathLike, kind: str, inline_bytes: int = INLINE_BYTES) -> str:
        """The hex SHA-256 of ``kind`` for ``path``: from the cache, computed now for a file of
        at most ``inline_bytes``, else "" while a background thread computes it (started here).
        "" also when the file cannot be read or hashed (logged once, never raised)."""
        key, signature = self._key(path)
        if signature is None:
            return ""
        found = self._cached(key, signature, kind)
        if found:
            return found
        if signature[0] <= inline_bytes:
            return self._compute(key, signature, kind)
        self.start(path, kind)
        return ""

    def start(self, path: str | os.PathLike, kind: str) -> None:
        """Hash ``path`` in the background unless the cache already has it (one file at a time)."""
        key, signature = self._key(path)
        if signature is None or self._cached(key, signature, kind):
            return
        with self._lock:
            if (key, kind) in self._queue:
                return
            self._queue.append((key, kind))
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="kubik-file-hashes", daemon=True)
                self._worker.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background queue is empty (for the command line and tests)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    # ------------------------------------------------------------------ internals
    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                key, kind = self._queue[0]
            _key, signature = self._key(key)
            if signature is not None and not self._cached(key, signature, kind):
                self._compute(key, signature, kind)
            with self._lock:
                self._queue.popleft()

    @staticmethod
    def _key(path: str | os.PathLike) -> tuple[str, tuple[int, int] | None]:
        key = os.path.abspath(os.fspath(path))
        try:
            stat = os.stat(key)
        except OSError:
            return key, None
        return key, (stat.st_size, stat.st_mtime_ns)

    def _cached(self, key: str, signature: tuple[int, int], kind: str) -> str:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (entry.get("size"), entry.get("mtime_ns")) != signature:
                return ""
            return entry.get(kind, "")

    def _compute(self, key: str, signature: tuple[int, int], kind: str) -> str:
        try:
            digest = sha256_of(key, kind)
        except (OSError, ValueError) as exc:
            log.warning("KubikAI: no %s hash for %s: %s", kind, os.path.basename(key), exc)
            return ""
        if self._key(key)[1] != signature:      # changed while it was read: not this version's hash
            return ""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (entry.get("size"), entry.get("mtime_ns")) != signature:
                entry = self._entries[key] = {"size": signature[0], "mtime_ns": signature[1]}
            entry[kind] = digest
            while len(self._entries) > MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._save()
        return digest

    def _load(self) -> dict[str, dict]:
        """The cache file's valid entries; a missing, damaged or hostile file gives none of its
        bad entries (never an error: hashes can always be computed again)."""
        try:
            if self.path.stat().st_size > MAX_CACHE_BYTES:
                return {}
            data = bounded_loads(self.path.read_bytes(), max_depth=4, max_bytes=MAX_CACHE_BYTES)
        except (OSError, BoundedJSONError):
            return {}
        entries = data.get("files") if isinstance(data, dict) and data.get("version") == 1 else None
        if not isinstance(entries, dict):
            return {}
        clean = {}
        for key, entry in list(entries.items())[:MAX_ENTRIES]:
            if not (isinstance(entry, dict) and isinstance(key, str) and os.path.isabs(key)
                    and _whole(entry.get("size")) and _whole(entry.get("mtime_ns"))):
                continue
            hashes = {kind: entry[kind] for kind in _KINDS if _is_sha256(entry.get(kind))}
            if hashes:
                clean[key] = {"size": entry["size"], "mtime_ns": entry["mtime_ns"], **hashes}
        return clean

    def _save(self) -> None:
        """Write the cache atomically (caller holds the lock); a read-only folder keeps it in memory."""
        try:
            write_text_atomic(self.path, json.dumps({"version": 1, "files": self._entries}))
        except OSError as exc:
            log.warning("KubikAI: could not save the hash cache in %s: %s", self.path.parent, exc.strerror or exc)


_CACHES: dict[str, HashCache] = {}
_CACHES_LOCK = threading.Lock()


def hash_cache(folder: str | os.PathLike | None = None) -> HashCache:
    """The process-wide cache for ``folder`` (default: default_cache_dir())."""
    key = os.path.abspath(os.fspath(folder if folder is not None else default_cache_dir()))
    with _CACHES_LOCK:
        if key not in _CACHES:
            _CACHES[key] = HashCache(key)
        return _CACHES[key]


def add_resource_hashes(loras: Sequence[dict], model_file: str | None,
                        lora_file: Callable[[str], str | None], cache: HashCache) -> str:
    """Give each LoRA dict (``name``, ...) its A1111 12-digit hash as ``autov3`` where its file
    is found (``lora_file(name)`` -> path or None), and return the checkpoint's A1111 Model hash
    (10 digits) for ``model_file``, or "" while it is not known yet."""
    for lora in loras:
        path = lora_file(str(lora.get("name", "")))
        digest = cache.get(path, "tensors") if path else ""
        if digest:
            lora["autov3"] = digest[:12]
    digest = cache.get(model_file, "file") if model_file else ""
    return digest[:10]


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX

