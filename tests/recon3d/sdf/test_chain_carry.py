"""Open meshes signed afresh carry a point's winding number to the next points where a proven
bound keeps it off 1/2 (:func:`cpu._chain_change_bound`): w(p) = w(q) + the signed crossings of
q -> p + a change along the segment that the mesh's boundary chain bounds. The bound must hold
for every mesh and segment, near the chain and across the sheet included; the carried signs must
equal libigl's exact winding number."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.recon3d.sdf import MeshSDF, cpu
from tests.recon3d.sdf.test_mesh_classes import wavy_sheet


def open_mesh(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "sheet":  # a bumpy, tilted height field
        vertices, faces = wavy_sheet(6)
        vertices = vertices + rng.normal(scale=0.03, size=vertices.shape)
        return vertices @ np.linalg.qr(rng.normal(size=(3, 3)))[0], faces
    if kind == "cap":  # part of a sphere, some faces flipped
        sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.7)
        faces = np.asarray(sphere.faces)[sphere.triangles_center[:, 2] > rng.uniform(-0.5, 0.5)].copy()
        flip = rng.random(len(faces)) < 0.2
        faces[flip] = faces[flip][:, ::-1]
        return np.asarray(sphere.vertices), faces
    corners = rng.uniform(-0.8, 0.8, (12, 1, 3)) + rng.normal(scale=0.3, size=(12, 3, 3))   # a soup
    return corners.reshape(-1, 3), np.arange(36).reshape(-1, 3)


def segment_end(kind: int, vertices, faces, chain_edges, rng):
    """A point anywhere, near a boundary chain edge, or just off (or on) the surface."""
    if kind == 0:
        return rng.uniform(-1, 1, 3)
    if kind == 1:
        edge = chain_edges[rng.integers(len(chain_edges))]
        return edge[:3] + rng.uniform() * (edge[3:6] - edge[:3]) + rng.normal(size=3) * 10.0 ** rng.uniform(-6, -1)
    a, b, c = vertices[faces[rng.integers(len(faces))]]
    u, v = sorted(rng.uniform(size=2))
    normal = np.cross(b - a, c - a)
    on = a + u * (b - a) + (v - u) * (c - a)
    return on + normal / np.linalg.norm(normal) * rng.choice([0.0, 1e-7, -1e-4, 1e-2])


@settings(derandomize=True, max_examples=120, deadline=None)
@given(kind=st.sampled_from(["sheet", "cap", "soup"]), seed=st.integers(0, 10_000),
       ends=st.tuples(st.integers(0, 2), st.integers(0, 2)))
def test_the_chain_bound_holds_the_winding_numbers_change_along_any_segment(kind, seed, ends):
    import igl

    vertices, faces = open_mesh(kind, seed)
    tree = cpu.build_tree(vertices, faces)
    welded, welded_faces = cpu._welded(vertices, faces)
    chain = cpu._chain_tree(welded, *cpu.boundary_chain(welded_faces))
    rng = np.random.default_rng(seed)
    stack = np.empty(cpu._STACK, np.int64)
    for _ in range(20):
        q = segment_end(ends[0], vertices, faces, chain[0], rng)
        p = (segment_end(ends[1], vertices, faces, chain[0], rng) if rng.random() < 0.3   # or a near neighbour
             else q + rng.normal(size=3) * 10.0 ** rng.uniform(-3, -0.7))
        crossings = cpu._signed_crossings(*q, *p, tree.arrays(), stack)
        bound = cpu._chain_change_bound(*q, *p, np.inf, chain, stack)
        if crossings == cpu.AMBIGUOUS or not bound < np.inf:  # (always so with an end inside an edge's ball)
            continue
        wq, wp = igl.winding_number(vertices, faces, np.stack([q, p]))
        assert abs(wp - wq - crossings) <= bound + 1e-9, (q, p, wq, wp, crossings, bound)


def test_a_limit_makes_the_bound_infinite_only_once_it_is_passed():
    vertices, faces = wavy_sheet(10)
    chain = cpu._chain_tree(vertices, *cpu.boundary_chain(faces))
    stack = np.empty(cpu._STACK, np.int64)
    q, p = np.array([0.1, 0.2, 0.3]), np.array([0.15, 0.1, 0.35])
    full = cpu._chain_change_bound(*q, *p, np.inf, chain, stack)
    assert 0 < full < np.inf
    assert cpu._chain_change_bound(*q, *p, 2 * full, chain, stack) == full
    assert cpu._chain_change_bound(*q, *p, 0.5 * full, chain, stack) == np.inf
    assert cpu._chain_change_bound(*q, *q, 0.0, chain, stack) == 0.0
    edge = chain[0][0]
    across_an_edge = cpu._chain_change_bound(*(edge[:3] + [0, 0, 0.1]), *(edge[:3] - [0, 0, 0.1]), np.inf, chain, stack)
    assert across_an_edge == np.inf


@pytest.mark.timeout(300)
def test_an_open_sheet_carries_most_signs_and_they_equal_libigls_exact_winding_number():
    import igl

    vertices, faces = wavy_sheet(60)
    tree = cpu.build_tree(vertices, faces)
    assert not tree.carried and tree.chain is not None and len(tree.chain[0]) == 4 * 60
    rng = np.random.default_rng(5)
    near = vertices[faces[rng.integers(0, len(faces), 4000)]].mean(1)
    points = np.concatenate([near + rng.normal(size=near.shape) * rng.choice([1e-3, 1e-2, 5e-2], (4000, 1)),
                             rng.uniform(-1, 1, (2000, 3))])
    ordered = np.ascontiguousarray(points[cpu.query_order(points)])
    out = np.empty(len(points)), np.empty(len(points), np.int64), np.empty(len(points))
    evaluated = cpu.query_chunk(ordered, 4.0, *cpu._kernel_inputs(tree), *out)
    without_chain = cpu.query_chunk(ordered, 4.0, *cpu._kernel_inputs(tree)[:3], cpu._NO_CHAIN,
                                    *(np.empty_like(a) for a in out))
    assert without_chain == len(points) and evaluated < 0.8 * len(points)
    exact = igl.winding_number(vertices, faces, ordered)
    decided = np.abs(exact - 0.5) > 1e-9
    assert np.array_equal((out[2] > 0.5)[decided], (exact > 0.5)[decided])
    signed = MeshSDF(vertices, faces, threads=2)(points)
    exact = igl.winding_number(vertices, faces, points)
    decided = np.abs(exact - 0.5) > 1e-9
    assert np.array_equal((signed < 0)[decided], (exact > 0.5)[decided])


def test_soups_and_flipped_faces_get_no_chain_their_edges_lie_everywhere():
    rng = np.random.default_rng(2)
    soup = rng.uniform(-0.8, 0.8, (300, 3))
    assert cpu.build_tree(soup, np.arange(300).reshape(-1, 3)).chain is None
    sphere = trimesh.creation.icosphere(subdivisions=3)
    faces = np.asarray(sphere.faces).copy()
    flip = rng.random(len(faces)) < 0.1
    faces[flip] = faces[flip][:, ::-1]
    tree = cpu.build_tree(np.asarray(sphere.vertices), faces)
    assert not tree.carried and tree.chain is None
