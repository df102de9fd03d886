"""Errors of the 3D data pipeline."""
from __future__ import annotations


class MeshError(ValueError):
    """A mesh that cannot be used: unreadable, empty, NaN coordinates, zero extent...

    The message names the file (when there is one) and what is wrong with it, so that a
    preprocessing report can show it as is.
    """
