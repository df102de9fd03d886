"""Make names that come from hubs and URLs safe to use inside a model folder.

A name from a server is data, not a path: we keep only its last component, drop control
characters and characters Windows forbids, refuse ``.``/``..``/empty names, sidestep Windows
device names and cap the length, so the result always lands directly in the target folder.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from .errors import UnsafeFilename

MAX_NAME_BYTES = 200
MAX_EXTENSION_CHARS = 16
_FORBIDDEN = re.compile(r'[<>:"|?*]')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                    *(f"LPT{i}" for i in range(1, 10))}
WORK_SUFFIXES = (".part", ".lock")


def safe_filename(name: str) -> str:
    """A plain file name derived from ``name``; raises UnsafeFilename if nothing usable is left."""
    raw = unicodedata.normalize("NFC", str(name or ""))
    base = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = _FORBIDDEN.sub("_", base).strip(" .")
    if not base:
        raise UnsafeFilename(f"file name {raw[:80]!r}: nothing usable is left after removing "
                             "directories and unsafe characters; pass a file name explicitly")
    stem, dot, ext = base.rpartition(".")
    if not dot or len(ext) > MAX_EXTENSION_CHARS:   # no extension, or not one at all
        stem, dot, ext = base, "", ""
    if stem.upper() in _WINDOWS_DEVICES:
        stem = f"_{stem}"
    if base.lower().endswith(WORK_SUFFIXES):
        raise UnsafeFilename(f"file name {base[:80]!r}: ends in a suffix used for downloads in "
                             "progress; pass another file name")
    ext = f".{ext}" if dot else ""
    return _truncate_utf8(stem, MAX_NAME_BYTES - len(ext.encode("utf-8"))) + ext


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that fits in ``max_bytes`` UTF-8 bytes (one pass)."""
    if max_bytes <= 0:
        return ""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def path_inside(folder: Path, name: str) -> Path:
    """``folder / name`` after checking that it stays directly inside ``folder``."""
    folder = Path(folder).resolve()
    target = (folder / name).resolve()
    if target.parent != folder:
        raise UnsafeFilename(f"file name {name!r}: would leave the folder {folder}")
    return target
