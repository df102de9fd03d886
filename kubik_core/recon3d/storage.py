"""The files this package writes (samples, renders, reports, model files), each written atomically
through :mod:`kubik_core.common.atomic`: a reader never sees half a file, a failed write never
leaves one behind."""
from __future__ import annotations

import io
import json

import numpy as np

from ..common.atomic import write_bytes_atomic

__all__ = ["save_json_atomic", "save_npz_atomic", "save_png_atomic", "write_bytes_atomic"]


def save_npz_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def save_json_atomic(path, data) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def save_png_atomic(path, image: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
