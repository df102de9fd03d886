"""Points on a triangle mesh's surface: area-weighted, and on its sharp edges.

What the VAE reads as its input (surface points with normals), what every ``samples.npz`` of a
dataset stores, and what the surface metrics compare (:mod:`.metrics`). ``mesh`` is anything with
trimesh's ``vertices``, ``faces``, ``area_faces`` and ``face_normals`` (sharp edges also need its
``face_adjacency*``).
"""
from __future__ import annotations

import numpy as np


def sample_surface(mesh, count: int, rng: np.random.Generator):
    """Area-weighted surface points and the unit normals of their faces."""
    areas = np.asarray(mesh.area_faces, np.float64)
    face = rng.choice(len(areas), size=count, p=areas / areas.sum())
    tri = np.asarray(mesh.vertices, np.float64)[np.asarray(mesh.faces)[face]]
    u, v = rng.random((2, count))
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    points = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    return points, np.asarray(mesh.face_normals, np.float64)[face]


def sample_sharp_edges(mesh, count: int, angle_deg: float, rng: np.random.Generator):
    """Points on edges whose two faces meet at more than ``angle_deg``, sampled by edge length.

    Returns empty arrays when the mesh has no sharp edge (a sphere). The normal of a sharp-edge
    point is that of one of its two faces, chosen at random, so both sides are represented.
    """
    angles = np.asarray(mesh.face_adjacency_angles)
    sharp = angles > np.deg2rad(angle_deg)
    if count <= 0 or not sharp.any():
        return np.zeros((0, 3)), np.zeros((0, 3))
    edges = np.asarray(mesh.face_adjacency_edges)[sharp]
    faces = np.asarray(mesh.face_adjacency)[sharp]
    ends = np.asarray(mesh.vertices, np.float64)[edges]
    lengths = np.linalg.norm(ends[:, 1] - ends[:, 0], axis=1)
    pick = rng.choice(len(edges), size=count, p=lengths / lengths.sum())
    t = rng.random(count)[:, None]
    points = ends[pick, 0] + t * (ends[pick, 1] - ends[pick, 0])
    side = rng.integers(0, 2, count)
    normals = np.asarray(mesh.face_normals, np.float64)[faces[pick, side]]
    return points, normals
