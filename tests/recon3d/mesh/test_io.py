"""Loading, cleaning and normalising meshes, and the errors for unusable files."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.errors import MeshError
from kubik_core.recon3d.mesh.io import clean_mesh, load_mesh, normalize


@pytest.mark.parametrize("suffix", ["obj", "ply", "stl", "off", "glb"])
def test_each_format_loads_to_the_same_clean_box(tmp_path, suffix):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    path = tmp_path / f"box.{suffix}"
    box.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12 and len(mesh.vertices) == 8  # STL's 36 corners merged back to 8
    assert np.allclose(mesh.bounds, box.bounds)
    assert mesh.is_watertight


def test_gltf_scene_is_flattened_with_node_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), node_name="a")
    moved = np.eye(4)
    moved[:3, 3] = (5.0, 0.0, 0.0)
    scene.add_geometry(trimesh.creation.box(), node_name="b", transform=moved)
    path = tmp_path / "scene.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 24
    assert np.allclose(mesh.bounds, [[-0.5, -0.5, -0.5], [5.5, 0.5, 0.5]])


def test_clean_merges_duplicates_and_drops_degenerate_faces():
    box = trimesh.creation.box()
    soup = box.vertices[box.faces].reshape(-1, 3)           # 36 unshared corners
    faces = np.arange(36).reshape(-1, 3)
    faces = np.vstack([faces, [[0, 0, 1]], faces[:1]])      # a degenerate and a duplicate face
    mesh = clean_mesh(trimesh.Trimesh(soup, faces, process=False))
    assert len(mesh.vertices) == 8 and len(mesh.faces) == 12


@pytest.mark.parametrize("content, message", [
    (b"this is not a mesh\n", "no triangle mesh"),
    (b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangle mesh"),   # vertices only: a point cloud
    (b"v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
    (b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "degenerate"),  # collinear: zero area
])
def test_unusable_files_raise_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.obj"
    path.write_bytes(content)
    with pytest.raises(MeshError, match=message) as info:
        load_mesh(path)
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(MeshError, match="no such file"):
        load_mesh(tmp_path / "absent.obj")
    (tmp_path / "mesh.xyz").write_text("1 2 3\n")
    with pytest.raises(MeshError, match="unsupported format"):
        load_mesh(tmp_path / "mesh.xyz")


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_normalize_fits_the_cube_and_maps_back(scale):
    source = trimesh.creation.capsule(radius=0.3, height=1.0)
    source.apply_scale(scale)
    source.apply_translation(np.array([3.0, -2.0, 7.0]) * scale)
    mesh, frame = normalize(source, margin=0.95)
    extent = mesh.bounds[1] - mesh.bounds[0]
    assert np.isclose(extent.max(), 1.9)
    assert np.allclose(mesh.bounds.sum(axis=0), 0.0, atol=1e-9)
    assert np.allclose(frame.to_source(mesh.vertices), source.vertices, rtol=1e-9, atol=1e-12 * scale)
