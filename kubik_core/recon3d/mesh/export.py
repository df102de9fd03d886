"""Write a triangle mesh as GLB, OBJ or PLY, atomically.

GLB is what ComfyUI's Preview3D and most viewers open; OBJ is the plain-text interchange format;
PLY (binary) is compact and keeps float32 coordinates exactly. Vertex normals (area-weighted from
the faces) go into every format, so viewers shade the surface smoothly. The file appears complete
or not at all: it is written beside its destination and renamed into place.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..storage import write_bytes_atomic

MESH_FORMATS = ("glb", "obj", "ply")


def save_mesh(vertices, faces, path, *, format: str | None = None) -> Path:
    """Write ``vertices`` [V, 3] and ``faces`` [F, 3] to ``path``; returns the path written.

    The format comes from ``format`` or else from the suffix of ``path``. When ``format`` is
    given and ``path`` has no suffix (or another, non-mesh one), ``.<format>`` is appended; a
    suffix naming a different mesh format is refused rather than silently mislabelled.
    """
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if format is None:
        if suffix not in MESH_FORMATS:
            raise ValueError(f"cannot tell the mesh format of {str(path)!r}: give it a suffix "
                             f"({', '.join('.' + f for f in MESH_FORMATS)}) or pass format=")
        format = suffix
    format = str(format).lower().lstrip(".")
    if format not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {format!r}; choose one of {', '.join(MESH_FORMATS)}")
    if suffix != format:
        if suffix in MESH_FORMATS:
            raise ValueError(f"{str(path)!r} has the suffix .{suffix} but format {format!r} was asked for")
        path = path.with_name(f"{path.name}.{format}")

    vertices, faces = checked_arrays(vertices, faces)
    mesh = trimesh.Trimesh(vertices, faces, process=False, validate=False)
    if format == "glb":
        data = mesh.export(file_type="glb", include_normals=True)
    elif format == "obj":
        data = mesh.export(file_type="obj", include_normals=True).encode()
    else:
        data = mesh.export(file_type="ply", encoding="binary", vertex_normal=True)
    write_bytes_atomic(path, data)
    return path


def checked_arrays(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [V, 3], int64 [F, 3]) arrays of a mesh that can be saved; ValueError saying what
    is wrong otherwise (empty, NaN/infinite coordinates, faces naming missing vertices ...)."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be a [V, 3] array, got shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be an [F, 3] array, got shape {faces.shape}")
    if len(vertices) == 0 or len(faces) == 0:
        raise ValueError(f"cannot save an empty mesh ({len(vertices)} vertices, {len(faces)} faces)")
    if not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got {faces.dtype}")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{int((~np.isfinite(vertices)).any(1).sum())} vertices have NaN or infinite coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces index vertices outside 0..{len(vertices) - 1}")
    return vertices, faces.astype(np.int64)
