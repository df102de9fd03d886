"""Scan LoRA folders into an index, cached on disk so an unchanged library is not read again.

The cache (one JSON file, written atomically) maps each file's absolute path to its signature
(size and modification time of the LoRA and of each sidecar) and the entry read from it. A
rescan lists the folders and stats the files - nothing else - and reuses every entry whose
signature is unchanged; new or changed files are read again (header and sidecars only).

SHA-256 needs the whole file, so ``LoraLibrary.compute_hashes`` runs apart from the scan: in a
background thread inside ComfyUI (``start_background_hashing``), or in the foreground with a
progress callback on the command line. Hashes land in the cache with the entry's signature, so
they are computed once per file version.

Bad files never stop a scan: a truncated, malformed or crafted file, a pickled checkpoint or a
folder that cannot be listed is recorded in ``problems`` and the scan goes on. Only regular
files are listed and read (never a FIFO or device, see files.py), files that vanish while the
scan runs are left out, and the folder walk is a loop, so no depth of folders exhausts the
stack.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..common.atomic import write_text_atomic
from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads
from ..common.paths import cache_dir
from .entry import LORA_EXTENSIONS, LoraEntry, read_entry
from .hashing import EMPTY_SHA256, autov2, autov3, sha256_file
from .sidecars import PREVIEW_SUFFIXES, SIDECAR_SUFFIXES

log = logging.getLogger(__name__)

CACHE_VERSION = 2   # 2: no tag-frequency trigger words; model name, poi, modelspec tags
CACHE_FILE_NAME = "lora_index.json"
MAX_CACHE_BYTES = 1024 * 1024 * 1024   # a library of 100,000 LoRAs is a few hundred MB
Progress = Callable[[int, int], None]  # (done, total)


def default_cache_path() -> Path:
    """Where the index lives outside ComfyUI (kubik_core.common.paths.cache_dir)."""
    return cache_dir() / CACHE_FILE_NAME


@dataclass
class ScanStats:
    files: int = 0
    read: int = 0          # entries read from disk (new or changed)
    cached: int = 0        # entries reused from the cache
    removed: int = 0       # cache entries whose file is gone
    seconds: float = 0.0


@dataclass
class LoraLibrary:
    """The scanned library: entries by absolute path, folder-level problems, scan statistics."""

    roots: list[str]
    entries: dict[str, LoraEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    cache_path: Path | None = None
    signatures: dict[str, list] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def sorted_entries(self) -> list[LoraEntry]:
        return sorted(self.entries.values(), key=lambda e: e.name.lower())

    def by_name(self, name: str) -> LoraEntry | None:
        """Entry by ComfyUI lora_name ("sub/x.safetensors"), stem or absolute path."""
        if name in self.entries:
            return self.entries[name]
        wanted = name.replace("\\", "/").lower()
        for entry in self.entries.values():
            if entry.name.lower() == wanted or entry.stem.lower() == wanted:
                return entry
        return None

    # ------------------------------------------------------------------ hashing
    def missing_hashes(self) -> list[LoraEntry]:
        return [e for e in self.entries.values() if e.readable and (not e.sha256 or not e.autov3)]

    def compute_hashes(self, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                       save_every_s: float = 30.0) -> int:
        """Hash every readable entry lacking a hash; returns how many were hashed.

        The cache is saved when done and every ``save_every_s`` seconds, so an interrupted run
        keeps what it finished.
        """
        todo = self.missing_hashes()
        last_save = time.monotonic()
        done = 0
        for i, entry in enumerate(todo):
            if cancel is not None and cancel():
                break
            try:
                if not entry.sha256:
                    full = sha256_file(entry.path, cancel=cancel)
                    if full == EMPTY_SHA256:
                        raise OSError("empty file")
                    with self._lock:
                        entry.sha256, entry.autov2, entry.hash_source = full, autov2(full), "computed"
                if not entry.autov3 and entry.data_offset:
                    tail = sha256_file(entry.path, start=entry.data_offset, cancel=cancel)
                    with self._lock:
                        entry.autov3 = autov3(tail)
                done += 1
            except InterruptedError:
                break
            except OSError as exc:
                with self._lock:
                    entry.problems.append(f"cannot hash: {exc.strerror or exc}")
            if progress is not None:
                progress(i + 1, len(todo))
            if self.cache_path is not None and time.monotonic() - last_save > save_every_s:
                self.save_cache()
                last_save = time.monotonic()
        if self.cache_path is not None and done:
            self.save_cache()
        return done

    def start_background_hashing(self) -> threading.Thread:
        """Hash in a daemon thread (lowest effort for ComfyUI: one file at a time)."""
        thread = threading.Thread(target=self.compute_hashes, name="kubik-lora-hashing", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ cache
    def save_cache(self) -> None:
        if self.cache_path is None:
            return
        with self._lock:
            payload = {"version": CACHE_VERSION,
                       "files": {path: {"signature": self.signatures.get(path), "entry": entry.to_dict()}
                                 for path, entry in self.entries.items()}}
            text = json.dumps(payload, separators=(",", ":"))
        write_text_atomic(self.cache_path, text)


def load_cache(cache_path: Path | None) -> dict[str, dict]:
    """Cached files by path, or {} if there is no usable cache (a cache is never needed)."""
    if cache_path is None:
        return {}
    try:
        data = bounded_loads(Path(cache_path).read_bytes(), max_bytes=MAX_CACHE_BYTES)
    except FileNotFoundError:
        return {}
    except (OSError, BoundedJSONError) as exc:
        log.warning("LoRA index cache %s is unreadable (%s); rescanning everything", cache_path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def scan_library(roots: Iterable[str | os.PathLike], cache_path: Path | None = None,
                 progress: Progress | None = None, save: bool = True) -> LoraLibrary:
    """Scan ``roots`` recursively (symlinked folders followed, each folder once).

    ``cache_path``: the JSON index to reuse and update (None: no cache).
    """
    started = time.perf_counter()
    roots = [os.path.abspath(os.fspath(r)) for r in roots]
    library = LoraLibrary(roots=roots, cache_path=Path(cache_path) if cache_path else None)
    cached = load_cache(library.cache_path)
    found: list[tuple[str, str, os.DirEntry, dict[str, os.DirEntry]]] = []
    visited: set[tuple[int, int]] = set()
    for root in roots:
        if not os.path.isdir(root):
            library.problems.append(f"{root}: not a folder")
            continue
        _walk(root, root, found, visited, library.problems)
    total = len(found)
    for i, (root, rel, dir_entry, siblings) in enumerate(found):
        path = dir_entry.path
        try:
            signature = _signature(dir_entry, siblings)
        except FileNotFoundError:
            continue  # removed since the folder was listed: not part of the library any more
        except OSError as exc:
            library.problems.append(f"{path}: cannot stat ({exc.strerror or exc})")
            continue
        hit = cached.get(path)
        if isinstance(hit, dict) and hit.get("signature") == signature:
            try:
                entry = LoraEntry.from_dict(hit["entry"])
            except (TypeError, KeyError):
                entry = None
            if entry is not None:
                library.entries[path] = entry
                library.signatures[path] = signature
                library.stats.cached += 1
                continue
        entry = _read_entry_guarded(Path(path), rel, signature, set(siblings))
        library.entries[path] = entry
        library.signatures[path] = signature
        library.stats.read += 1
        if progress is not None:
            progress(i + 1, total)
    library.stats.files = len(library.entries)
    library.stats.removed = len(set(cached) - set(library.entries))
    if library.cache_path is not None and save and (library.stats.read or library.stats.removed
                                                    or not library.cache_path.exists()):
        try:
            library.save_cache()
        except OSError as exc:
            library.problems.append(f"{library.cache_path}: cannot write the index cache ({exc.strerror or exc})")
    library.stats.seconds = time.perf_counter() - started
    return library


def _read_entry_guarded(path: Path, rel: str, signature: list, siblings: set[str]) -> LoraEntry:
    """read_entry, and if a file still finds a way to make it raise, that file is listed as
    unreadable with the error (and the traceback logged) instead of ending the scan."""
    try:
        return read_entry(path, rel, signature[0], signature[1], siblings)
    except Exception as exc:  # noqa: BLE001 - one file must never end the scan of the library
        log.exception("LoRA %s could not be read", path)
        return LoraEntry(name=rel, path=str(path), size=signature[0], mtime_ns=signature[1],
                         readable=False, problems=[f"could not be read ({type(exc).__name__}: "
                                                   f"{str(exc)[:200]}); please report this file"])


def _walk(root: str, folder: str, found: list, visited: set[tuple[int, int]], problems: list[str]) -> None:
    """Append (root, name relative to root, DirEntry, the folder's files) for every LoRA file
    under ``folder``: each folder's files, then its subfolders by name, depth first."""
    pending = [folder]
    while pending:
        folder = pending.pop()
        try:
            st = os.stat(folder)  # the folder itself (device, inode): a link loop is seen once
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                children = list(it)
        except OSError as exc:
            problems.append(f"{folder}: cannot list this folder ({exc.strerror or exc}); skipped")
            continue
        files: dict[str, os.DirEntry] = {}
        subfolders = []
        for child in children:
            try:
                if child.is_dir():
                    if not child.name.startswith("."):
                        subfolders.append(child.path)
                elif child.is_file():  # regular files (or links to them) only: no FIFO, no device
                    files[child.name] = child
            except OSError:
                continue
        for name, child in files.items():
            if name.lower().endswith(LORA_EXTENSIONS):
                rel = child.path[len(root):].lstrip(os.sep).replace(os.sep, "/")
                found.append((root, rel, child, files))
        pending.extend(sorted(subfolders, reverse=True))


def _signature(dir_entry: os.DirEntry, siblings: dict[str, os.DirEntry]) -> list:
    """[size, mtime_ns, [sidecar name, size, mtime_ns]...]: changes when any of them changes.
    A sidecar that vanished since the listing is left out (and read_sidecars skips it)."""
    st = dir_entry.stat()
    stem = dir_entry.name.rpartition(".")[0]
    sig: list = [st.st_size, st.st_mtime_ns]
    for suffix in SIDECAR_SUFFIXES + PREVIEW_SUFFIXES:
        side = siblings.get(stem + suffix)
        if side is not None:
            try:
                sst = side.stat()
            except FileNotFoundError:
                continue
            sig.append([side.name, sst.st_size, sst.st_mtime_ns])
    return sig
