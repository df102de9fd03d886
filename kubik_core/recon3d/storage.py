"""The files this package writes (samples, renders, reports, model files), each written atomically
through :mod:`kubik_core.common.atomic`: a reader never sees half a file, a failed write never
leaves one behind."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from ..common.atomic import write_bytes_atomic

__all__ = ["save_json_atomic", "save_npz_atomic", "save_png_atomic", "write_bytes_atomic"]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes ``np.savez_compressed`` would write, but the same for the same arrays on every run:
    numpy stamps each zip entry with the time of writing, so two runs over one mesh (one machine or
    a Ray cluster, today or tomorrow) would differ in a few header bytes. Read with ``np.load``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_npz_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    write_bytes_atomic(path, npz_bytes(arrays))


def save_json_atomic(path, data) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def load_json_object(path) -> dict:
    """The JSON object in ``path``, a file a hostile writer may have made (read with bounded
    JSON); ValueError naming the file when it cannot be read or holds no object."""
    from pathlib import Path

    from ..common.bounded_json import BoundedJSONError
    from ..common.bounded_json import loads as bounded_loads

    try:
        value = bounded_loads(Path(path).read_bytes())
    except (BoundedJSONError, OSError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    return value


def save_png_atomic(path, image: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
