"""Renders: alpha, depth and normals agree with the saved camera convention."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig, camera_poses


@pytest.fixture(scope="module")
def renderer():
    try:
        r = MeshRenderer(RenderConfig(views=3, ring=2, resolution=96, seed=3))
    except RenderBackendError as exc:
        pytest.skip(str(exc))
    yield r
    r.close()


def _unproject(depth, cameras):
    """World points of the foreground pixels, using only the saved intrinsics and pose."""
    k = cameras["intrinsics"]
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    x = (u + 0.5 - k["cx"]) / k["fx"] * z
    y = -(v + 0.5 - k["cy"]) / k["fy"] * z
    camera_points = np.stack([x, y, -z, np.ones_like(z)], axis=1)
    return camera_points, (v, u)


def test_sphere_views_reproject_onto_the_sphere_and_normals_face_the_camera(renderer):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.9)
    views, cameras = renderer.render(sphere)
    assert len(views) == 3 and len(cameras["camera_to_world"]) == 3
    for view, pose in zip(views, cameras["camera_to_world"]):
        rgba, depth, normal = view["rgba"], view["depth"], view["normal"]
        assert rgba.shape == (96, 96, 4) and rgba.dtype == np.uint8
        assert np.array_equal(rgba[..., 3] > 0, depth > 0)
        assert rgba[0, 0, 3] == 0 and rgba[48, 48, 3] == 255
        camera_points, (v, u) = _unproject(depth, cameras)
        world = (np.asarray(pose) @ camera_points.T).T[:, :3]
        radius = np.linalg.norm(world, axis=1)
        assert np.abs(radius - 0.9).max() < 0.03
        # The world normal of a sphere point is its direction from the centre.
        cosine = (normal[v, u] * world / radius[:, None]).sum(axis=1)
        assert np.median(cosine) > 0.99
        assert (rgba[..., :3][depth > 0].mean(axis=0) > 40).all()  # lit, not black


def test_vertex_colours_are_kept(renderer):
    box = trimesh.creation.box(extents=(1.2, 1.2, 1.2))
    box.visual.vertex_colors = np.tile([220, 20, 20, 255], (len(box.vertices), 1))
    views, _ = renderer.render(box)
    pixels = views[0]["rgba"][views[0]["rgba"][..., 3] > 0][:, :3].astype(int)
    assert (pixels[:, 0] > pixels[:, 1] + 30).mean() > 0.95


def test_ring_views_are_evenly_spaced_at_the_stated_distance():
    config = RenderConfig(views=6, ring=4, distance=3.0, ring_elevation_deg=20.0)
    poses = camera_poses(config)
    eyes = np.array([p[:3, 3] for p in poses])
    np.testing.assert_allclose(np.linalg.norm(eyes, axis=1), 3.0)
    np.testing.assert_allclose(eyes[:4, 1], 3.0 * np.sin(np.radians(20.0)))
    for pose in poses:  # every camera looks at the origin down its -Z axis
        np.testing.assert_allclose(-pose[:3, 2], -pose[:3, 3] / np.linalg.norm(pose[:3, 3]), atol=1e-9)


def test_no_view_crops_the_shape_and_the_shape_fills_the_frame(renderer):
    rod = trimesh.creation.box(extents=(1.9, 0.3, 0.3))  # its corners reach well beyond the unit sphere
    rod.apply_transform(trimesh.transformations.rotation_matrix(0.6, [0, 0, 1]))
    views, cameras = renderer.render(rod)
    assert cameras["distance"] > 0
    widest = 0.0
    for view in views:
        alpha = view["rgba"][..., 3] > 0
        border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
        assert not border.any()
        columns = np.nonzero(alpha.any(axis=0))[0]
        widest = max(widest, (columns[-1] - columns[0]) / alpha.shape[1])
    assert widest > 0.6
