"""Mesh extraction from SDFs (hierarchical vs dense decode, marching cubes) and mesh export."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kubik_core.recon3d.mesh.extract import (DecodeTooLarge, EmptyShapeError, estimate_decode_bytes, extract_mesh,
                                        keep_largest_component)
from kubik_core.recon3d.mesh.export import MESH_FORMATS, save_mesh


def sphere(center=(0.0, 0.0, 0.0), radius=0.6):
    c = torch.tensor(center, dtype=torch.float32)
    return lambda p: (p - c.to(p.device)).norm(dim=1) - radius


def box(half=(0.5, 0.3, 0.4)):
    h = torch.tensor(half, dtype=torch.float32)

    def sdf(p):
        q = p.abs() - h.to(p.device)
        return q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)
    return sdf


def torus(major=0.55, minor=0.2):
    def sdf(p):
        ring = torch.sqrt(p[:, 0] ** 2 + p[:, 2] ** 2) - major   # around the Y axis (up)
        return torch.sqrt(ring ** 2 + p[:, 1] ** 2) - minor
    return sdf


def two_spheres(p):
    """A big sphere and a small one that do not touch."""
    return torch.minimum(sphere((-0.35, 0, 0), 0.45)(p), sphere((0.6, 0, 0), 0.2)(p))


class Counting:
    """Wraps an SDF and records the size of every call."""

    def __init__(self, sdf):
        self.sdf = sdf
        self.calls: list[int] = []

    def __call__(self, points):
        self.calls.append(len(points))
        return self.sdf(points)


def signed_volume(vertices, faces) -> float:
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def as_trimesh(mesh):
    import trimesh

    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


@pytest.mark.parametrize("name, sdf, volume", [
    ("sphere", sphere(), 4 / 3 * math.pi * 0.6 ** 3),
    ("box", box(), 8 * 0.5 * 0.3 * 0.4),
    ("torus", torus(), 2 * math.pi ** 2 * 0.55 * 0.2 ** 2),
])
def test_hierarchical_decode_gives_the_dense_mesh_with_far_fewer_queries(name, sdf, volume):
    dense = extract_mesh(Counting(sdf), 128, hierarchical=False)
    hier = extract_mesh(Counting(sdf), 128)
    assert dense.queries == 129 ** 3
    assert hier.queries * 10 < dense.queries, (hier.queries, dense.queries)
    # Same grid values around the surface, so marching cubes gives the very same mesh (a Chamfer
    # distance of 0; sampled Chamfer would only measure its own sampling noise here).
    np.testing.assert_array_equal(hier.faces, dense.faces)
    np.testing.assert_allclose(hier.vertices, dense.vertices, atol=1e-6)
    mesh = as_trimesh(hier)
    assert mesh.is_watertight
    assert signed_volume(hier.vertices, hier.faces) == pytest.approx(volume, rel=0.02)


def test_an_sdf_that_jumps_decodes_to_the_dense_mesh():
    """The winding-number sign of an open box jumps across its open side (the distance there is
    not small): the cells it crosses are refined or queried all the same, so the hierarchical
    mesh is the dense one, vertex for vertex."""
    import trimesh

    from kubik_core.recon3d.sdf import MeshSDF

    box_mesh = trimesh.creation.box(extents=(1.2, 1.0, 1.4))
    sdf = MeshSDF(box_mesh.vertices, box_mesh.faces[2:])  # one side open
    sdf_fn = lambda p: torch.from_numpy(sdf(p.numpy()))  # noqa: E731
    dense = extract_mesh(sdf_fn, 64, hierarchical=False, keep_largest=False)
    hier = extract_mesh(sdf_fn, 64, keep_largest=False)
    assert hier.queries * 2 < dense.queries
    assert torch.equal(hier.grid > 0, dense.grid > 0)
    np.testing.assert_array_equal(hier.faces, dense.faces)
    np.testing.assert_allclose(hier.vertices, dense.vertices, atol=1e-6)


def test_a_plate_thinner_than_a_coarse_cell_is_not_lost():
    # 0.024 thick, between the coarse grid planes y = 0 and y = 0.0625: no coarse point is inside
    slab = box((0.6, 0.012, 0.5))
    plate = lambda p: slab(p - torch.tensor([0.0, 0.03, 0.0]))  # noqa: E731
    dense = extract_mesh(plate, 128, hierarchical=False)
    hier = extract_mesh(plate, 128)
    assert hier.queries * 4 < dense.queries
    np.testing.assert_array_equal(hier.faces, dense.faces)
    np.testing.assert_allclose(hier.vertices, dense.vertices, atol=1e-6)
    assert as_trimesh(hier).is_watertight


def test_sphere_volume_frame_and_outward_normals():
    center = np.array([0.3, -0.2, 0.1])
    mesh = extract_mesh(sphere(tuple(center), 0.5), 96, bound=1.0)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int64
    assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(4 / 3 * math.pi * 0.125, rel=0.01)
    # axis order x, y, z and the [-bound, bound] mapping: the surface sits where the SDF says
    radii = np.linalg.norm(mesh.vertices - center, axis=1)
    assert np.abs(radii - 0.5).max() < 0.01
    normals = as_trimesh(mesh).face_normals
    centroids = mesh.vertices[mesh.faces].mean(1)
    assert (np.einsum("ij,ij->i", normals, centroids - center) > 0).all()


def test_bound_scales_the_grid_frame():
    mesh = extract_mesh(sphere(radius=1.5), 64, bound=2.0)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 1.5).max() < 0.02
    assert mesh.grid.shape == (65, 65, 65)


def test_grid_is_exact_near_the_surface_and_signed_right_everywhere():
    sdf = torus()
    mesh = extract_mesh(sdf, 64)
    axis = torch.linspace(-1, 1, 65)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    exact = sdf(points).reshape(65, 65, 65)
    near = exact.abs() < 2.0 / 64
    torch.testing.assert_close(mesh.grid[near], exact[near], atol=1e-6, rtol=0)
    assert (torch.sign(mesh.grid) == torch.sign(exact)).all()
    assert mesh.queries < 65 ** 3 / 2   # the rest came from interpolation


def test_mesh_sdf_of_a_real_mesh_decodes_back_to_that_mesh():
    import trimesh

    from kubik_core.recon3d.mesh.metrics import mesh_metrics
    from kubik_core.recon3d.sdf import MeshSDF

    source = trimesh.creation.capsule(radius=0.3, height=0.9, count=[24, 24])
    source.apply_transform(trimesh.transformations.rotation_matrix(0.6, [1, 0, 1]))
    mesh_sdf = MeshSDF(source.vertices, source.faces)
    sdf = lambda p: mesh_sdf.query_tensor(p)  # noqa: E731
    dense = extract_mesh(sdf, 64, hierarchical=False)
    hier = extract_mesh(sdf, 64)
    assert hier.queries * 2 < dense.queries
    for mesh in (hier, dense):
        metrics = mesh_metrics(as_trimesh(mesh), source, points=20_000, normalize="none")
        assert metrics["chamfer_l1"] < 0.01 and metrics["volume_iou"] > 0.97, metrics
        assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(source.volume, rel=0.03)


def test_largest_component_is_kept_unless_asked_otherwise():
    both = extract_mesh(two_spheres, 64, keep_largest=False)
    big = extract_mesh(two_spheres, 64)
    assert as_trimesh(both).body_count == 2
    assert as_trimesh(big).body_count == 1
    assert np.abs(np.linalg.norm(big.vertices - [-0.35, 0, 0], axis=1) - 0.45).max() < 0.02
    assert big.faces.max() == len(big.vertices) - 1   # re-indexed, no unreferenced vertices


def test_keep_largest_component_weighs_area_not_face_count():
    import trimesh

    fine_small = trimesh.creation.icosphere(subdivisions=4, radius=0.2)          # 5120 faces
    coarse_big = trimesh.creation.icosphere(subdivisions=1, radius=0.8)          # 80 faces
    coarse_big.apply_translation([2, 0, 0])
    joined = trimesh.util.concatenate([fine_small, coarse_big])
    vertices, faces = keep_largest_component(joined.vertices, joined.faces)
    assert len(faces) == 80 and len(vertices) == 42
    assert np.allclose(vertices.mean(0), [2, 0, 0], atol=1e-5)


def test_shape_cut_by_the_box_is_capped_closed():
    mesh = extract_mesh(box((2.0, 0.4, 0.4)), 48)   # a bar longer than the box
    tm = as_trimesh(mesh)
    assert tm.is_watertight
    assert mesh.vertices[:, 0].min() == pytest.approx(-1.0, abs=1e-5)
    assert mesh.vertices[:, 0].max() == pytest.approx(1.0, abs=1e-5)
    assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(2.0 * 0.8 * 0.8, rel=0.02)


@pytest.mark.parametrize("offset, word", [(+5.0, "empty"), (-5.0, "inside")])
@pytest.mark.parametrize("hierarchical", [True, False])
def test_sdf_without_a_surface_is_an_empty_shape(offset, word, hierarchical):
    with pytest.raises(EmptyShapeError, match=f"no surface.*{word}"):
        extract_mesh(lambda p: p.norm(dim=1) * 0 + offset, 64, hierarchical=hierarchical)


@pytest.mark.parametrize("hierarchical", [True, False])
def test_nan_from_the_sdf_is_an_error(hierarchical):
    def diverged(p):
        d = sphere()(p)
        d[p[:, 0] > 0.5] = float("nan")
        return d
    with pytest.raises(ValueError, match="NaN"):
        extract_mesh(diverged, 64, hierarchical=hierarchical)


def test_sdf_returning_the_wrong_number_of_values_is_an_error():
    with pytest.raises(ValueError, match="one value per point"):
        extract_mesh(lambda p: sphere()(p)[:-1], 32)


@pytest.mark.parametrize("hierarchical", [True, False])
def test_too_large_a_resolution_fails_before_any_query(hierarchical):
    sdf = Counting(sphere())
    with pytest.raises(DecodeTooLarge, match=r"resolution 4096 needs about [\d.]+ GiB"):
        extract_mesh(sdf, 4096, hierarchical=hierarchical)        # ~0.5 TiB: more than any test machine
    with pytest.raises(DecodeTooLarge, match=r"resolution 64 .* more than the 0\.00 GiB memory limit"):
        extract_mesh(sdf, 64, hierarchical=hierarchical, memory_limit_bytes=1 << 20)
    assert sdf.calls == []
    assert estimate_decode_bytes(4096, hierarchical) > 4 * 4097 ** 3      # at least the float32 grid
    extract_mesh(sdf, 64, hierarchical=hierarchical,
                 memory_limit_bytes=estimate_decode_bytes(64, hierarchical))   # exactly enough is enough


def test_should_stop_interrupts_between_batches():
    class Interrupted(Exception):
        pass

    sdf = Counting(sphere())
    checks = []

    def should_stop():
        checks.append(1)
        if len(checks) == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        extract_mesh(sdf, 128, batch_points=8192, should_stop=should_stop)
    assert len(sdf.calls) == 3


def test_progress_counts_batches_up_to_the_true_total():
    sdf = Counting(sphere())
    seen = []
    mesh = extract_mesh(sdf, 64, batch_points=4096, progress=lambda done, total: seen.append((done, total)))
    assert max(sdf.calls) <= 4096
    assert seen[-1] == (len(sdf.calls), len(sdf.calls))
    assert all(done <= total for done, total in seen)
    assert [done for done, _ in seen[:-1]] == list(range(1, len(sdf.calls) + 1))
    assert sum(sdf.calls) == mesh.queries


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="resolution"):
        extract_mesh(sphere(), 1)
    with pytest.raises(ValueError, match="coarse_resolution 24"):
        extract_mesh(sphere(), 64, coarse_resolution=24)
    with pytest.raises(ValueError, match="bound"):
        extract_mesh(sphere(), 32, bound=0.0)


def test_resolution_that_is_not_a_power_of_two_still_refines():
    # 48 = 3 * 16: coarse grids of 24 (one level) and 12 (two levels)
    dense = extract_mesh(torus(), 48, hierarchical=False)
    for coarse in (24, 12):
        hier = extract_mesh(torus(), 48, coarse_resolution=coarse)
        np.testing.assert_allclose(hier.vertices, dense.vertices, atol=1e-6)
        assert hier.queries < dense.queries


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_decode_matches_the_cpu():
    cpu = extract_mesh(torus(), 128)
    gpu = extract_mesh(torus(), 128, device="cuda")
    assert gpu.grid.device.type == "cuda"
    assert gpu.queries == cpu.queries
    np.testing.assert_allclose(gpu.vertices, cpu.vertices, atol=1e-5)


# --- export -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sphere_mesh():
    return extract_mesh(sphere(), 32)


@pytest.mark.parametrize("fmt", MESH_FORMATS)
def test_save_and_load_round_trip(tmp_path, sphere_mesh, fmt):
    import trimesh

    path = save_mesh(sphere_mesh.vertices, sphere_mesh.faces, tmp_path / f"shape.{fmt}")
    assert path == tmp_path / f"shape.{fmt}"
    loaded = trimesh.load(path, process=False, force="mesh")
    np.testing.assert_allclose(loaded.vertices, sphere_mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, sphere_mesh.faces)
    assert loaded.is_watertight and loaded.volume > 0       # winding kept: normals still point out
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"shape.{fmt}"]


def test_format_argument_and_suffixes(tmp_path, sphere_mesh):
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    assert save_mesh(v, f, tmp_path / "a", format="glb") == tmp_path / "a.glb"
    assert save_mesh(v, f, tmp_path / "b.PLY") == tmp_path / "b.PLY"
    assert save_mesh(v, f, tmp_path / "c.v2", format=".OBJ") == tmp_path / "c.v2.obj"
    assert (tmp_path / "a.glb").read_bytes()[:4] == b"glTF"
    with pytest.raises(ValueError, match="suffix .obj but format 'glb'"):
        save_mesh(v, f, tmp_path / "d.obj", format="glb")
    with pytest.raises(ValueError, match="unknown mesh format 'stl'.*glb, obj, ply"):
        save_mesh(v, f, tmp_path / "e.stl", format="stl")
    with pytest.raises(ValueError, match="cannot tell the mesh format"):
        save_mesh(v, f, tmp_path / "f.stl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.glb", "b.PLY", "c.v2.obj"]


@pytest.mark.parametrize("vertices, faces, message", [
    (np.zeros((0, 3)), np.zeros((0, 3), int), "empty mesh"),
    (np.zeros((3, 3)), np.zeros((0, 3), int), "empty mesh"),
    (np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), np.array([[0, 1, 2]]), "NaN"),
    (np.eye(3), np.array([[0, 1, 3]]), "outside 0..2"),
    (np.eye(3)[:, :2], np.array([[0, 1, 2]]), r"\[V, 3\]"),
])
def test_bad_meshes_are_refused_and_the_old_file_kept(tmp_path, sphere_mesh, vertices, faces, message):
    path = save_mesh(sphere_mesh.vertices, sphere_mesh.faces, tmp_path / "kept.glb")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message):
        save_mesh(vertices, faces, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["kept.glb"]


def test_failed_write_leaves_nothing_behind(tmp_path, sphere_mesh):
    (tmp_path / "taken.glb").mkdir()            # the destination is a folder: the rename must fail
    with pytest.raises(OSError):
        save_mesh(sphere_mesh.vertices, sphere_mesh.faces, tmp_path / "taken.glb")
    assert [p.name for p in tmp_path.iterdir()] == ["taken.glb"]
    assert list((tmp_path / "taken.glb").iterdir()) == []
