"""Procedural shapes and mesh metrics."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.metrics import mesh_metrics
from kubik_core.recon3d.synth import PRIMITIVES, random_primitive, write_synthetic_meshes


def test_synthetic_shapes_are_closed_and_reproducible(tmp_path):
    paths = write_synthetic_meshes(tmp_path / "a", 4, seed=7)
    again = write_synthetic_meshes(tmp_path / "b", 4, seed=7)
    other = write_synthetic_meshes(tmp_path / "c", 1, seed=8)
    assert [p.name for p in paths] == [f"synth_{i:05d}.ply" for i in range(4)]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))
    assert other[0].read_bytes() != paths[0].read_bytes()
    for path in paths:
        mesh = trimesh.load(path)
        assert mesh.is_watertight and mesh.volume > 0
        assert np.abs(mesh.bounds).max() < 2.0


@pytest.mark.parametrize("kind", PRIMITIVES)
def test_every_primitive_is_a_solid(kind):
    mesh = random_primitive(np.random.default_rng(0), kind)
    assert mesh.is_watertight and mesh.volume > 0


def test_identical_meshes_score_perfectly():
    mesh = trimesh.creation.torus(major_radius=0.6, minor_radius=0.2)
    result = mesh_metrics(mesh, mesh.copy(), points=20000)
    assert result["chamfer_l1"] < 0.015 and result["fscore@0.1"] == 1.0 and result["fscore@0.05"] > 0.99
    assert result["normal_consistency"] > 0.95 and result["volume_iou"] == 1.0


def test_scaled_sphere_against_known_values():
    gt = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    pred = gt.copy()
    pred.apply_scale(1.1)
    raw = mesh_metrics(pred, gt, points=20000, normalize="none", thresholds=(0.05, 0.15))
    assert abs(raw["volume_iou"] - 1 / 1.1 ** 3) < 0.02
    assert abs(raw["chamfer_l1"] - 0.1) < 0.01          # every point is 0.1 from the other sphere
    assert raw["fscore@0.05"] < 0.05 and raw["fscore@0.15"] > 0.95
    assert mesh_metrics(pred, gt, points=20000, normalize="each")["chamfer_l1"] < 0.02  # scale removed
    assert mesh_metrics(pred, gt, points=2000, normalize="gt")["volume_iou"] < 0.8
    with pytest.raises(ValueError, match="normalize"):
        mesh_metrics(pred, gt, normalize="bbox")
