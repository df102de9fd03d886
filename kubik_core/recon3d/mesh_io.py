"""Load meshes of any common format into one clean triangle soup in a known frame.

Every mesh the pipeline touches goes through :func:`load_mesh` (read, flatten scenes, clean) and
:func:`normalize` (centre and scale into [-1, 1]^3). The :class:`Normalization` that comes back is
stored with every sample file, so that distances and points map back to source units with
``source = normalized * scale + center``.

Axes are kept as the file has them: glTF is Y up and right-handed, which is the project's
convention; OBJ/PLY/STL/OFF carry no axis convention, so they are taken to be Y up as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MeshError

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


@dataclass(frozen=True)
class Normalization:
    """Maps normalised coordinates back to source units: ``source = normalized * scale + center``."""

    center: tuple[float, float, float]
    scale: float

    def to_source(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) * self.scale + np.asarray(self.center)

    def to_normalized(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - np.asarray(self.center)) / self.scale

    def apply(self, mesh):
        """A copy of ``mesh`` moved into the normalised frame (visuals kept)."""
        out = mesh.copy()
        out.vertices = self.to_normalized(mesh.vertices)
        return out

    def as_dict(self) -> dict:
        return {"center": list(self.center), "scale": self.scale,
                "convention": "source = normalized * scale + center"}


def load_mesh(path: str | Path, *, keep_visuals: bool = False):
    """Read a mesh file and return one cleaned ``trimesh.Trimesh``.

    Scenes (glTF/GLB, multi-object OBJ) are flattened with their node transforms applied.
    ``keep_visuals`` keeps textures and vertex colours (for rendering); otherwise they are
    dropped, which lets duplicate vertices merge across UV seams. Raises :class:`MeshError`
    with the file name for anything unusable.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: no such file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported format {path.suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    try:
        loaded = trimesh.load(path, process=False, force=None)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise MeshError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, trimesh.Scene):
        geometries = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
        if not geometries:
            raise MeshError(f"{path}: the file holds no triangle mesh")
        mesh = geometries[0] if len(geometries) == 1 else trimesh.util.concatenate(geometries)
    elif isinstance(loaded, trimesh.Trimesh):
        mesh = loaded
    else:
        raise MeshError(f"{path}: the file holds no triangle mesh ({type(loaded).__name__})")
    try:
        return clean_mesh(mesh, keep_visuals=keep_visuals)
    except MeshError as exc:
        raise MeshError(f"{path}: {exc}") from None


def clean_mesh(mesh, *, keep_visuals: bool = False):
    """Drop degenerate and duplicate faces, merge duplicate vertices, refuse unusable meshes."""
    import trimesh

    vertices = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
    if len(vertices) == 0:
        raise MeshError("the mesh has no vertices")
    if len(faces) == 0:
        raise MeshError("the mesh has no faces (a point cloud?)")
    if not np.isfinite(vertices).all():
        raise MeshError(f"{int((~np.isfinite(vertices)).any(1).sum())} vertices have NaN or infinite coordinates")
    visual = mesh.visual if keep_visuals else None
    mesh = trimesh.Trimesh(vertices, faces, visual=visual, process=False, validate=False)
    if not keep_visuals:
        mesh.merge_vertices()
    mesh.update_faces(mesh.nondegenerate_faces(height=None))
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    if len(mesh.faces) == 0:
        raise MeshError("every face is degenerate (zero area)")
    extent = float(np.ptp(mesh.vertices, axis=0).max())
    if not extent > 0:
        raise MeshError("the mesh has zero extent")
    return mesh


def normalize(mesh, *, margin: float = 0.95):
    """Centre the bounding box at the origin and scale its longest side to ``2 * margin``.

    Returns ``(normalized_mesh, Normalization)``. Works for any source scale (1e-6 to 1e6):
    the scale is computed in float64 before vertices are cast anywhere.
    """
    lo, hi = mesh.bounds
    center = (lo + hi) / 2.0
    scale = float((hi - lo).max()) / (2.0 * margin)
    if not np.isfinite(scale) or scale <= 0:
        raise MeshError(f"cannot normalise a mesh of extent {scale * 2 * margin!r}")
    normalization = Normalization(tuple(float(c) for c in center), scale)
    return normalization.apply(mesh), normalization
