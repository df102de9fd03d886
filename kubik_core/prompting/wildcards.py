"""Wildcard files for ``__name__``: which folders may hold them, and reading them safely.

A wildcards folder typed into a node runs on the server, so it must lie inside the wildcard
roots the server allows (ComfyUI's models/wildcards, <ComfyUI>/wildcards, its user directory,
or folders listed in $KUBIK_WILDCARDS_DIRS), judged after symlinks are resolved. Inside the
folder, a wildcard name never leaves it (``..``, absolute names, symlinks pointing out), a file
must be a regular file of at most MAX_WILDCARD_BYTES, and read files are kept in a small LRU
cache. Errors name the wildcard or the input, never an absolute server path.
"""
from __future__ import annotations

import os
import stat
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from .errors import WildcardError

MAX_WILDCARD_BYTES = 1 << 20      # 1 MiB: tens of thousands of options
MAX_NAME_CHARS = 200
MAX_CACHED_FILES = 64
MAX_CACHED_BYTES = 32 << 20       # file sizes plus 64 bytes per kept line

# Folders (os.pathsep-separated) that widen the wildcard roots a node may read from.
ROOTS_VARIABLE = "KUBIK_WILDCARDS_DIRS"

_ROOTS_HINT = ("ComfyUI's models/wildcards, ComfyUI/wildcards, the ComfyUI user directory, or "
               f"a folder listed in the {ROOTS_VARIABLE} environment variable")


def folder_within_roots(folder: str, roots: Iterable[str]) -> Path:
    """The real path of the wildcards folder a node input names, if it lies inside a root.

    ``folder`` is absolute, or relative to one of ``roots`` (tried in order). A folder outside
    every root is refused with the same message whether it exists or not, so the input cannot
    probe the server's disk.
    """
    text = folder.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise WildcardError("the wildcards folder name holds control characters; type a folder "
                            "name such as 'my_wildcards'")
    real_roots = [Path(os.path.realpath(root)) for root in roots if root and root.strip()]
    if not real_roots:
        raise WildcardError("no wildcard folders are set up here: put the files in "
                            f"{_ROOTS_HINT}")
    candidates = [text] if os.path.isabs(text) else [os.path.join(root, text) for root in real_roots]
    inside = False
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if any(real == root or real.is_relative_to(root) for root in real_roots):
            inside = True
            if real.is_dir():
                return real
    if inside:
        raise WildcardError(f"the wildcards folder {text!r} does not exist; create it inside "
                            f"{_ROOTS_HINT}")
    raise WildcardError(f"the wildcards folder must lie inside {_ROOTS_HINT} (give its name "
                        "relative to one of them; links leading elsewhere are not followed)")


class WildcardFiles:
    """The options of each ``__name__`` in one folder (the folder may not exist yet: using a
    wildcard then says so)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(os.path.realpath(os.fspath(folder)))

    def options(self, name: str) -> list[str]:
        """The non-blank, non-comment lines of ``<folder>/<name>.txt``."""
        shown = f"__{name}__" if len(name) <= 60 else f"__{name[:57]}...__"
        relative = name.strip().replace("\\", "/")  # prompts written on Windows work anywhere
        if not relative:
            raise WildcardError(f"wildcard {shown} has no name")
        if len(relative) > MAX_NAME_CHARS:
            raise WildcardError(f"wildcard {shown} has a name longer than {MAX_NAME_CHARS} characters")
        if not self.folder.is_dir():
            raise WildcardError(f"wildcard {shown} used, but the wildcards folder does not exist")
        path = Path(os.path.realpath(os.path.join(self.folder, relative + ".txt")))
        if not path.is_relative_to(self.folder):
            raise WildcardError(f"wildcard {shown} points outside the wildcards folder")
        lines = _read_options(path, shown, relative)
        if not lines:
            raise WildcardError(f"wildcard file {relative}.txt has no options "
                                "(only blank or # lines)")
        return lines


# (real path, mtime, size, inode) -> options; least recently used first.
_cache: OrderedDict[tuple, list[str]] = OrderedDict()
_cache_costs: dict[tuple, int] = {}


def _read_options(path: Path, shown: str, relative: str) -> list[str]:
    try:
        # no blocking on a FIFO, and no following a link swapped in after the check above
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise WildcardError(f"wildcard {shown} not found: no file {relative}.txt in the "
                            "wildcards folder") from None
    except OSError as exc:
        raise WildcardError(f"wildcard {shown} cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WildcardError(f"wildcard {shown} is not a file ({relative}.txt is something else)")
        if info.st_size > MAX_WILDCARD_BYTES:
            raise WildcardError(f"wildcard file {relative}.txt has {info.st_size} bytes; the limit "
                                f"is {MAX_WILDCARD_BYTES} (split it into smaller files)")
        key = (str(path), info.st_mtime_ns, info.st_size, info.st_ino)
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
        chunks, size = [], 0
        while size <= MAX_WILDCARD_BYTES:
            chunk = os.read(fd, MAX_WILDCARD_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > MAX_WILDCARD_BYTES:  # grew while we read it
        raise WildcardError(f"wildcard file {relative}.txt is larger than {MAX_WILDCARD_BYTES} "
                            "bytes (split it into smaller files)")
    lines = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    _remember(key, lines, len(data) + 64 * len(lines))
    return lines


def _remember(key: tuple, lines: list[str], cost: int) -> None:
    _cache[key] = lines
    _cache_costs[key] = cost
    while len(_cache) > MAX_CACHED_FILES or sum(_cache_costs.values()) > MAX_CACHED_BYTES:
        oldest, _ = _cache.popitem(last=False)
        del _cache_costs[oldest]
