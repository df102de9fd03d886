"""Mesh metrics: Chamfer, F-score, normal consistency, volume IoU, on shapes with known answers."""
from __future__ import annotations

import pytest
import trimesh

from kubik_core.recon3d.mesh.metrics import mesh_metrics


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
