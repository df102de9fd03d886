"""Load meshes of any common format into one clean triangle soup in a known frame.

Every mesh the pipeline touches goes through :func:`load_mesh` (read, flatten scenes, clean) and
:func:`normalize` (centre and scale into [-1, 1]^3). The :class:`Normalization` that comes back is
stored with every sample file, so that distances and points map back to source units with
``source = normalized * scale + center``.

Axes are kept as the file has them: glTF is Y up and right-handed, which is the project's
convention; OBJ/PLY/STL/OFF carry no axis convention, so they are taken to be Y up as well.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import MeshError

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
MAX_COORDINATE = 1e30   # float32 distances in source units must stay finite
MIN_EXTENT = 1e-30      # ... and above float32's smallest numbers
MERGE_TOLERANCE = 1e-8  # of the mesh's half extent: vertices this close are one vertex
MAX_FACES = 50_000_000  # triangles a scene may place after instancing (about 3.6 GB of float64 corners)


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
    """Read a mesh file and return one cleaned ``trimesh.Trimesh`` (see :func:`clean_mesh`).

    Scenes (glTF/GLB, multi-object OBJ) are flattened with their node transforms applied.
    ``keep_visuals`` keeps textures and vertex colours (for rendering); otherwise they are
    dropped, which lets duplicate vertices merge across UV seams. Textures, buffers and material
    files the mesh file names are read only from its own folder and below. Raises
    :class:`MeshError` with the file name for anything unusable.
    """
    import trimesh

    from .off_reader import OffError, read_off

    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: no such file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported format {path.suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a damaged file is reported by the error below, not as noise
            if path.suffix.lower() == ".off":
                vertices, faces = read_off(path.read_bytes())
                loaded = trimesh.Trimesh(vertices, faces, process=False, validate=False)
            else:
                loaded = trimesh.load(path, process=False, force=None, resolver=_folder_resolver(path))
    except OffError as exc:
        raise MeshError(f"{path}: {exc}") from None
    except MemoryError:
        raise MeshError(f"{path}: too large to read into memory") from None
    except Exception as exc:  # trimesh raises many types for corrupt files
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise MeshError(f"{path}: cannot be read, the file is damaged or not a valid {path.suffix.lower()} "
                        f"file ({type(exc).__name__}: {detail})") from None
    if isinstance(loaded, trimesh.Scene):
        _check_scene_size(loaded, path)
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


def _check_scene_size(scene, path: Path) -> None:
    """Refuse scenes that instance their meshes into more than MAX_FACES triangles (a few KB of
    nodes can repeat one mesh a million times) before anything is copied."""
    total = 0
    for node in scene.graph.nodes_geometry:
        geometry = scene.geometry.get(scene.graph[node][1])
        total += len(getattr(geometry, "faces", ()))
        if total > MAX_FACES:
            raise MeshError(f"{path}: its scene places more than {MAX_FACES:,} triangles (meshes repeated by "
                            "its nodes); simplify or split the model")


@cache
def _resolver_class():
    from trimesh.resolvers import FilePathResolver

    class FolderResolver(FilePathResolver):
        """Reads the assets a mesh file names (textures, glTF buffers, OBJ materials) from the mesh's
        folder and below only: ``../../secret`` or ``/etc/passwd`` in a file gets nothing, and no
        name ever reaches the network."""

        def get(self, name: str):
            root = Path(self.parent).resolve()
            for candidate in (str(name).strip(), Path(str(name).strip()).name):
                target = (root / candidate).resolve()
                if target.is_relative_to(root) and target.is_file():
                    return target.read_bytes()
            raise FileNotFoundError(f"asset {str(name)[:100]!r} is not a file in the mesh's folder")

        def namespaced(self, namespace: str):
            return self

    return FolderResolver


def _folder_resolver(path: Path):
    return _resolver_class()(str(path))


def clean_mesh(mesh, *, keep_visuals: bool = False):
    """The usable part of a mesh, with every face wound the same way.

    Refuses (MeshError) meshes without vertices or faces, faces naming vertices that do not
    exist, NaN/infinite coordinates, coordinates beyond +-MAX_COORDINATE, zero extent. Then, in a
    frame where the mesh spans [-1, 1] (so that tolerances do not depend on its units: at 1e12
    units a fixed tolerance overflows, at 1e-9 it merges everything): merges vertices closer than
    MERGE_TOLERANCE (unless ``keep_visuals``, which keeps UV seams), drops faces thinner than that
    and repeated faces, orients the faces consistently (:mod:`.orientation`), drops unused
    vertices. The result is in the source units; ``mesh.metadata["orientation"]`` says what the
    orientation repair did (``faces_flipped``, ``non_orientable_parts``, ``consistent``).
    """
    import trimesh

    from .orientation import orient_faces

    try:
        vertices = np.asarray(mesh.vertices, np.float64)
        faces = np.asarray(mesh.faces)
    except (TypeError, ValueError) as exc:
        raise MeshError(f"vertices and faces must be numeric arrays ({exc})") from None
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise MeshError("the mesh has no vertices")
    if faces.size == 0:
        raise MeshError("the mesh has no faces (a point cloud?)")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise MeshError(f"faces must be an integer [F, 3] array of vertex indices, got {faces.dtype} {faces.shape}")
    faces = faces.astype(np.int64)
    outside = (faces < 0) | (faces >= len(vertices))
    if outside.any():
        raise MeshError(f"{int(outside.any(axis=1).sum())} faces refer to vertices that do not exist (indices "
                        f"outside 0..{len(vertices) - 1}, e.g. {int(faces[outside][0])})")
    if not np.isfinite(vertices).all():
        raise MeshError(f"{int((~np.isfinite(vertices)).any(1).sum())} vertices have NaN or infinite coordinates")
    unit = _unit_frame(vertices)
    with np.errstate(all="ignore"):
        first, group = _merge_groups(unit)
        merged = group[faces]
        keep = _usable_faces(unit[first], merged)
        if not keep.any():
            raise MeshError("every face is degenerate (zero area)")
        oriented, orientation = orient_faces(unit[first], merged[keep])
    if keep_visuals:
        out = trimesh.Trimesh(vertices, faces, visual=mesh.visual, process=False, validate=False)
        out.update_faces(keep)
        flip = oriented[:, 0] != merged[keep][:, 0]   # a reversed triangle starts with its old last corner
        if flip.any():
            kept_faces = np.array(out.faces)
            kept_faces[flip] = kept_faces[flip][:, ::-1]
            out.faces = kept_faces
        out.remove_unreferenced_vertices()
    else:
        used, compact = np.unique(oriented, return_inverse=True)
        out = trimesh.Trimesh(vertices[first[used]], compact.reshape(-1, 3), process=False, validate=False)
    out.metadata["orientation"] = orientation.as_dict()
    return out


def _unit_frame(vertices: np.ndarray) -> np.ndarray:
    """The vertices moved and scaled so that the longest side of their box spans [-1, 1]."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    largest = float(max(np.abs(lo).max(), np.abs(hi).max()))
    if largest > MAX_COORDINATE:
        raise MeshError(f"coordinates reach {largest:.3g}, beyond the supported +-{MAX_COORDINATE:.0e}; "
                        "rescale the mesh (e.g. to metres)")
    half = float((hi - lo).max()) / 2.0
    if not half > 0:
        raise MeshError("the mesh has zero extent")
    if 2 * half < MIN_EXTENT:
        raise MeshError(f"the mesh is {2 * half:.3g} units across, below the supported {MIN_EXTENT:.0e}; "
                        "rescale the mesh (e.g. to millimetres)")
    return (vertices - (lo + hi) / 2.0) / half


def _merge_groups(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first vertex of each group, group of each vertex) for vertices within MERGE_TOLERANCE."""
    return group_rows(np.round(unit / MERGE_TOLERANCE).astype(np.int64))   # |unit| <= 1: no overflow


def group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each group of equal rows, group of each row); groups are
    numbered in sorted order. A stable lexicographic sort, several times faster than
    ``np.unique(axis=0)``."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    starts = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    group = np.empty(len(rows), np.int64)
    group[order] = np.cumsum(starts) - 1
    return order[starts], group


def _usable_faces(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mask of faces with three distinct corners, a height above MERGE_TOLERANCE, and not a
    repeat of an earlier face (same corners in any order)."""
    triangles = points[faces]
    edges = triangles[:, [1, 2, 2]] - triangles[:, [0, 1, 0]]
    doubled_area = np.linalg.norm(np.cross(edges[:, 0], edges[:, 2]), axis=1)
    longest = np.linalg.norm(edges, axis=2).max(axis=1)
    thick = doubled_area > MERGE_TOLERANCE * longest
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    keep = thick & distinct
    first, _ = group_rows(np.sort(faces, axis=1))
    repeated = np.ones(len(faces), bool)
    repeated[first] = False
    return keep & ~repeated


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
