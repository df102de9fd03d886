"""``kubik 3d synth``: a procedural shape set, so a model can be trained without any download.

Each shape is the union of one to ``max_parts`` primitives (box, sphere, ellipsoid, cylinder,
cone, capsule, torus) with random proportions, rotations and offsets. Unions go through
manifold3d, so every shape is a closed, self-intersection-free solid; where the boolean fails
the parts are kept as separate shells, which the winding-number sign still handles.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..storage import write_bytes_atomic

PRIMITIVES = ("box", "sphere", "ellipsoid", "cylinder", "cone", "capsule", "torus")


def random_primitive(rng: np.random.Generator, kind: str | None = None):
    """One primitive of random proportions, randomly rotated, centred near the origin."""
    import trimesh
    from trimesh import creation, transformations

    kind = kind or PRIMITIVES[rng.integers(len(PRIMITIVES))]
    size = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - short local helper
    if kind == "box":
        mesh = creation.box(extents=rng.uniform(0.3, 1.0, 3))
    elif kind == "sphere":
        mesh = creation.icosphere(subdivisions=3, radius=size(0.25, 0.5))
    elif kind == "ellipsoid":
        mesh = creation.icosphere(subdivisions=3, radius=1.0)
        mesh.apply_scale(rng.uniform(0.15, 0.5, 3))
    elif kind == "cylinder":
        mesh = creation.cylinder(radius=size(0.1, 0.4), height=size(0.3, 1.0), sections=48)
    elif kind == "cone":
        mesh = creation.cone(radius=size(0.15, 0.45), height=size(0.3, 1.0), sections=48)
    elif kind == "capsule":
        mesh = creation.capsule(radius=size(0.1, 0.3), height=size(0.2, 0.8), count=[24, 24])
    elif kind == "torus":
        major = size(0.25, 0.45)
        mesh = creation.torus(major_radius=major, minor_radius=major * size(0.2, 0.45),
                              major_sections=48, minor_sections=24)
    else:
        raise ValueError(f"unknown primitive {kind!r}; choose from {', '.join(PRIMITIVES)}")
    mesh.apply_transform(transformations.random_rotation_matrix(rng.random(3)))
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)


def random_shape(rng: np.random.Generator, max_parts: int = 3):
    """The union of 1..max_parts random primitives placed at random offsets."""
    import trimesh

    parts = []
    for i in range(int(rng.integers(1, max_parts + 1))):
        part = random_primitive(rng)
        if i:
            part.apply_translation(rng.normal(0.0, 0.3, 3))
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    try:
        union = trimesh.boolean.union(parts, engine="manifold")
        if len(union.faces):
            return union
    except Exception:  # noqa: BLE001 - fall back to separate shells, still a valid SDF input
        pass
    return trimesh.util.concatenate(parts)


def write_synthetic_meshes(out_dir, count: int, *, seed: int = 0, max_parts: int = 3,
                           progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write ``count`` shapes as ``out_dir/synth_00000.ply`` ...; shape i depends only on (seed, i)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = out_dir / f"synth_{i:05d}.ply"
        if not path.exists():
            mesh = random_shape(np.random.default_rng([seed, i]), max_parts=max_parts)
            write_bytes_atomic(path, mesh.export(file_type="ply"))
        paths.append(path)
        if progress is not None:
            progress(i + 1, count)
    return paths
