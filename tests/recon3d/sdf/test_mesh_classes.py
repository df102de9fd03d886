"""The exact winding number on the meshes real collections hold: open sheets, soups, many bodies,
flipped faces. Its hierarchy (each tree node's patch replaced by a cone over its boundary where
the point lies outside the node's box) must equal libigl's sum over every triangle, and the
signs built on it must match libigl's exact winding number."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from numba import njit

from kubik_core.recon3d.sdf import MeshSDF, cpu


@njit(cache=False)
def exact_windings(points, mesh):
    stack = np.empty(128, np.int64)
    out = np.empty(len(points))
    for i in range(len(points)):
        out[i] = cpu._exact_winding(points[i, 0], points[i, 1], points[i, 2], mesh, stack)
    return out


def wavy_sheet(cells: int = 40):
    x, y = np.meshgrid(np.linspace(-0.9, 0.9, cells + 1), np.linspace(-0.9, 0.9, cells + 1), indexing="ij")
    vertices = np.stack([x, y, 0.2 * np.sin(3 * x) * np.cos(2 * y)], -1).reshape(-1, 3)
    index = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b, c, d = index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    return vertices, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def many_bodies():
    """Twelve overlapping bodies: closed spheres and boxes, and boxes with faces missing."""
    rng = np.random.default_rng(4)
    parts = []
    for k in range(12):
        part = (trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.1, 0.3)) if k % 2
                else trimesh.creation.box(extents=rng.uniform(0.2, 0.5, 3)))
        if k % 4 == 0:
            part = trimesh.Trimesh(part.vertices, part.faces[2:], process=False)
        part.apply_translation(rng.uniform(-0.6, 0.6, 3))
        parts.append(part)
    both = trimesh.util.concatenate(parts)
    return np.asarray(both.vertices), np.asarray(both.faces)


def mesh_of(kind: str):
    rng = np.random.default_rng(7)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    if kind == "open sheet":
        return wavy_sheet()
    if kind == "half sphere":
        return np.asarray(sphere.vertices), np.asarray(sphere.faces)[sphere.triangles_center[:, 2] > 0.1]
    if kind == "soup of a closed surface":  # every triangle with corners of its own
        return np.asarray(sphere.vertices)[sphere.faces].reshape(-1, 3), np.arange(3 * len(sphere.faces)).reshape(-1, 3)
    if kind == "random soup":
        return rng.uniform(-0.8, 0.8, (900, 3)), np.arange(900).reshape(-1, 3)
    if kind == "many bodies":
        return many_bodies()
    faces = np.asarray(sphere.faces).copy()  # flipped faces
    flip = rng.random(len(faces)) < 0.1
    faces[flip] = faces[flip][:, ::-1]
    return np.asarray(sphere.vertices), faces


KINDS = ["open sheet", "half sphere", "soup of a closed surface", "random soup", "many bodies", "flipped faces"]


def probe_points(vertices, faces, rng):
    """Uniform points and points at 1e-4 to 5e-2 from the surface, where w is nearest 1/2."""
    near = vertices[faces[rng.integers(0, len(faces), 1500)]].mean(1)
    offsets = rng.normal(size=near.shape) * rng.choice([1e-4, 1e-3, 1e-2, 5e-2], (len(near), 1))
    return np.concatenate([rng.uniform(-1, 1, (1500, 3)), near + offsets])


@pytest.mark.parametrize("kind", KINDS)
def test_hierarchical_exact_winding_number_equals_the_sum_over_every_triangle(kind):
    import igl

    vertices, faces = mesh_of(kind)
    tree = cpu.build_tree(vertices, faces)
    points = probe_points(vertices, faces, np.random.default_rng(1))
    ours = exact_windings(points, tree.arrays())
    assert np.abs(ours - igl.winding_number(vertices, faces, points)).max() < 1e-9


@pytest.mark.parametrize("kind", KINDS)
def test_signs_and_distances_match_libigl_exactly_on_every_mesh_class(kind):
    import igl

    vertices, faces = mesh_of(kind)
    points = probe_points(vertices, faces, np.random.default_rng(2))
    signed = MeshSDF(vertices, faces, threads=2)(points)
    exact = igl.winding_number(vertices, faces, points)
    squared, _, _ = igl.point_mesh_squared_distance(points, vertices, faces)
    decided = (np.abs(exact - 0.5) > 1e-6) & (squared > 1e-14)  # on the surface the sign is moot
    assert decided.mean() > 0.95
    assert np.array_equal((signed < 0)[decided], (exact > 0.5)[decided])
    assert np.abs(np.abs(signed) - np.sqrt(squared)).max() < 1e-6   # float32 results


def test_node_boundaries_are_the_uncancelled_edges_of_each_nodes_triangles():
    """A closed piece's node has no boundary; the root's boundary is the mesh's boundary chain;
    every node's boundary is its own triangles' uncancelled edges (checked against a count), kept
    only when it has at most half as many edges as the node has triangles."""
    vertices, faces = many_bodies()
    tree = cpu.build_tree(vertices, faces)
    distinct, welded = cpu._welded(vertices, faces)
    chain, _ = cpu.closing_cones(distinct, welded)
    span = tree.boundary_span
    assert span[0, 1] - span[0, 0] == len(chain)
    sorted_faces = welded[tree.order]
    for node in range(0, len(span), 7):
        edges = {}
        for face in sorted_faces[tree.tri_start[node]:tree.tri_stop[node]]:
            for a, b in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
                edges[(a, b)] = edges.get((a, b), 0) + 1
                edges[(b, a)] = edges.get((b, a), 0) - 1
        expected = sum(max(n, 0) for n in edges.values())
        tris = tree.tri_stop[node] - tree.tri_start[node]
        if 2 * expected <= tris:
            assert span[node, 1] - span[node, 0] == expected
        else:
            assert span[node, 0] == span[node, 1] == -1
    sphere = trimesh.creation.icosphere(subdivisions=3)
    closed = cpu.build_tree(np.asarray(sphere.vertices), np.asarray(sphere.faces))
    assert (closed.boundary_span[:, 1] == closed.boundary_span[:, 0]).any()  # closed patches below the root too
    assert closed.boundary_span[0, 1] == closed.boundary_span[0, 0]
    rng = np.random.default_rng(0)
    soup = cpu.build_tree(rng.uniform(-1, 1, (3000, 3)), np.arange(3000).reshape(-1, 3))
    assert (soup.boundary_span == -1).all() and len(soup.boundary) == 0   # nothing a soup could use


def test_corners_repeated_at_the_same_place_are_one_vertex_for_the_sign_only():
    """A closed surface stored as a soup (OBJ texture seams, STL) is closed for the sign: carried,
    not evaluated point by point; faces keep their numbers and distances stay exact."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    soup_vertices = np.asarray(sphere.vertices)[sphere.faces].reshape(-1, 3)
    soup_faces = np.arange(3 * len(sphere.faces)).reshape(-1, 3)[::-1].copy()   # numbered backwards
    soup = MeshSDF(soup_vertices, soup_faces)
    assert soup._tree.carried and soup._tree.cone is None and soup._tree.boundary_length == 0
    welded = MeshSDF(sphere.vertices, sphere.faces[::-1].copy())
    points = np.random.default_rng(3).uniform(-1, 1, (4000, 3))
    soup_distance, soup_face = soup.query(points)
    welded_distance, welded_face = welded.query(points)
    assert np.array_equal(soup_distance, welded_distance)
    assert np.array_equal(soup_face, welded_face)


@njit(cache=False)
def own_windings(points, mesh):
    """The engine's fresh winding number of each point and the error its settling pass allows."""
    stack = np.empty(128, np.int64)
    value, error = np.empty(len(points)), np.empty(len(points))
    for i in range(len(points)):
        value[i], error[i] = cpu._own_winding_and_error(points[i, 0], points[i, 1], points[i, 2], mesh, stack, True)
    return value, error


def test_every_pass_of_the_fresh_winding_numbers_ladder_stays_within_its_allowed_error():
    """Where a sign is evaluated afresh, each point jumps to the pass whose allowed error lies
    below the margin |w - 1/2| it has so far (coarse, beta 2, 3, 4, 6, exact): whichever pass
    settles it, the value must lie within that pass's error of libigl's sum over every triangle
    (so its side of 1/2 is libigl's), on every mesh class, for uniform points and points 1e-4 to
    5e-2 from the surface; and the probes must reach every pass."""
    import igl

    passes = {cpu.COARSE_ERROR, cpu.MID_ERROR, cpu.REFINED_ERROR, cpu.NEAR_ERROR, cpu.FINE_ERROR, cpu.EXACT_ERROR}
    used = set()
    for kind in KINDS:
        vertices, faces = mesh_of(kind)
        points = probe_points(vertices, faces, np.random.default_rng(5))
        value, error = own_windings(points, cpu.build_tree(vertices, faces).arrays())
        exact = igl.winding_number(vertices, faces, points)
        assert (np.abs(value - exact) <= error).all(), kind
        assert set(np.unique(error)) <= passes, kind
        used |= set(np.unique(error))
    assert used == passes
