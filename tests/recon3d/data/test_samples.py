"""Sample layout and placement: surface, sharp edges, near-surface widths, uniform, labels."""
from __future__ import annotations

import numpy as np
import trimesh

from kubik_core.recon3d.data.samples import SampleConfig, sample_shape
from kubik_core.recon3d.mesh.io import normalize
from kubik_core.recon3d.sdf import MeshSDF


def _box():
    return normalize(trimesh.creation.box(extents=(1.0, 0.6, 0.4)), margin=0.95)


def test_box_samples_have_the_documented_layout_and_lie_where_they_should():
    mesh, frame = _box()
    config = SampleConfig(surface=4000, near=3000, uniform=2000, near_sigmas=(0.01, 0.05), seed=5)
    arrays = sample_shape(mesh, frame, config).arrays
    assert arrays["surface_points"].shape == (4000, 3) and arrays["surface_points"].dtype == np.float32
    assert arrays["near_points"].shape == (3000, 3) and arrays["near_sdf"].shape == (3000,)
    assert arrays["uniform_points"].shape == (2000, 3) and arrays["uniform_sdf"].shape == (2000,)
    assert "near_occupancy" not in arrays and float(arrays["sdf_truncation"]) == 0.0

    sdf = MeshSDF(mesh.vertices, mesh.faces)
    assert np.abs(sdf(arrays["surface_points"])).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(arrays["surface_normals"], axis=1), 1.0, atol=1e-5)

    # A box's 12 edges are all sharp: a quarter of the surface points sit on them (2 coordinates at +-half).
    sharp = arrays["surface_sharp"]
    assert sharp.sum() == 1000
    half = (mesh.bounds[1] - mesh.bounds[0]) / 2
    on_boundary = np.isclose(np.abs(arrays["surface_points"]), half, atol=1e-5).sum(axis=1)
    assert (on_boundary[sharp] >= 2).all() and (on_boundary[~sharp] >= 1).all()

    assert set(np.unique(arrays["near_sigma"])) == {np.float32(0.01), np.float32(0.05)}
    for sigma in (0.01, 0.05):  # the distance spread grows with the noise width
        spread = np.abs(arrays["near_sdf"][arrays["near_sigma"] == np.float32(sigma)]).mean()
        assert 0.3 * sigma < spread < 1.2 * sigma
    assert np.abs(arrays["uniform_points"]).max() <= 1.0
    np.testing.assert_allclose(arrays["uniform_sdf"], sdf(arrays["uniform_points"]), atol=1e-6)
    assert np.allclose(arrays["normalization_center"], frame.center)
    assert float(arrays["normalization_scale"]) == frame.scale


def test_truncation_occupancy_and_seed():
    mesh, frame = _box()
    config = SampleConfig(surface=500, near=500, uniform=500, truncation=0.1, occupancy=True, seed=1)
    arrays = sample_shape(mesh, frame, config).arrays
    assert np.abs(arrays["uniform_sdf"]).max() <= np.float32(0.1)
    assert np.isclose(np.abs(arrays["uniform_sdf"]).max(), 0.1)  # far points really were clipped
    assert np.array_equal(arrays["uniform_occupancy"], arrays["uniform_sdf"] < 0)
    assert np.array_equal(arrays["near_occupancy"], arrays["near_sdf"] < 0)
    again = sample_shape(mesh, frame, config).arrays
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)


def test_smooth_shapes_get_no_sharp_samples():
    mesh, frame = normalize(trimesh.creation.icosphere(subdivisions=4))
    arrays = sample_shape(mesh, frame, SampleConfig(surface=1000, near=10, uniform=10)).arrays
    assert not arrays["surface_sharp"].any() and len(arrays["surface_points"]) == 1000
