"""Open model files and sidecars that a folder listing names, without ever blocking on them.

A model folder may hold a FIFO, a socket or a link to a device or a /proc file where a model
should be (by accident, or placed there to hang the server). Opening a FIFO for reading waits
for a writer, and reading some /proc files waits for events, so every file is opened without
blocking, checked to be a regular file, and read only up to the size it reports.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFileError(OSError):
    """The path is a FIFO, socket, device or folder, which the library never reads."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` for regular files only; raises NotRegularFileError otherwise.

    The check is made on the opened descriptor (fstat), so a file swapped for a FIFO between
    the folder listing and the open is refused too, and the open itself never waits.
    """
    fd = os.open(path, _FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(0, "not a regular file (a pipe, device, socket or folder)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of a regular file, and never more than its reported size
    (a /proc file reports 0 bytes and is not read at all)."""
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        return handle.read(min(size, limit + 1)) if size else b""
