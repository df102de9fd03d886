"""Tiny model files built once per test run, however many fixtures ask for them.

Building a tiny checkpoint starts a Python that imports torch and ComfyUI and fills a few hundred
megabytes with seeded random values: 10 to 16 s on a 2-core CPU. The same file (same builder,
family and seed) is wanted by the generate, lora_train, browser, comfy_client and node tests
alike, so the first request builds it into a folder of this process and every request (the first
included) gets a hard link to that file at the path it asked for (a copy where the two folders are
on different file systems). The builders are deterministic: a link holds the very bytes a build
of its own would have written.

Tests treat these files as read-only inputs (as ComfyUI and `kubik` do). A test that wants to
damage a model file writes a new file, never into the given one in place, since a hard link
shares its bytes with every other holder.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

_folder: Path | None = None
_built: dict[tuple, Path] = {}


def _cache_folder() -> Path:
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="kubik-tiny-models-"))
        atexit.register(shutil.rmtree, _folder, True)
    return _folder


def place(key: tuple, path: Path, build: Callable[[Path], None]) -> Path:
    """Give ``path`` the file that ``build(target)`` writes for ``key`` (all that decides its
    bytes: builder, family, seed, Python, ComfyUI folder), building it on the first request only.
    Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    built = _built.get(key)
    if built is None or not built.is_file():
        built = _cache_folder() / f"{len(_built)}-{path.name}"
        build(built)
        _built[key] = built
    if path.exists():
        path.unlink()
    try:
        os.link(built, path)
    except OSError:     # another file system (or one without hard links): a copy
        shutil.copyfile(built, path)
    return path
