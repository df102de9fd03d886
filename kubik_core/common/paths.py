"""Folders a command writes into, checked before any work starts."""
from __future__ import annotations

import os
from pathlib import Path


def writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a folder that exists (created now) and takes a file, or ValueError naming ``flag``.

    The check writes and removes a probe file, which also catches read-only file systems, full
    disks and ACLs that permission bits do not show.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {folder}: is a file, not a folder; name a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{flag} {folder}: cannot write there "
                         f"({exc.strerror or type(exc).__name__})") from None
    return folder


def is_write_probe(name: str) -> bool:
    """Whether a file name is one of writable_folder's probes (another process may hold one)."""
    return name.startswith(".write-test-")


def cache_dir() -> Path:
    """Where the pack keeps caches outside ComfyUI (LoRA index, CPU profile, file hashes):
    $KUBIK_CACHE_DIR, else $XDG_CACHE_HOME/kubik, else ~/.cache/kubik. Inside ComfyUI the nodes
    pass <user directory>/kubik/ instead."""
    root = os.environ.get("KUBIK_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "kubik")
    return Path(root)
