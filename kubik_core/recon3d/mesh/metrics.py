"""Mesh reconstruction metrics, following occupancy networks' protocol (im2mesh/eval.py).

Both meshes are first brought into one frame (``normalize``):

* ``"each"`` (default): each mesh's bounding box is centred and its longest side scaled to 2,
  i.e. both fill [-1, 1]^3 - the fair choice when the prediction's scale is arbitrary;
* ``"gt"``: both are moved by the ground truth's transform (the prediction is expected in the
  same frame, e.g. a model output compared with the normalised training mesh);
* ``"none"``: compared as they are.

Then ``points`` area-weighted samples with face normals are drawn on each surface, and:

* ``chamfer_l1`` = (mean |p - nn_gt(p)| + mean |g - nn_pred(g)|) / 2, Euclidean distances;
* ``chamfer_l2`` = the same with squared distances (mean, not sum);
* ``fscore@t``: harmonic mean of precision (pred samples within t of GT) and recall;
* ``normal_consistency``: mean |n_p . n_nearest| over both directions;
* ``volume_iou``: on ``points`` uniform points in the union of both bounding boxes, inside
  meaning winding number > 0.5 (so open meshes get a volume too).
"""
from __future__ import annotations

import numpy as np

from .surface import sample_surface

DEFAULT_THRESHOLDS = (0.01, 0.02, 0.05, 0.1)


def surface_metrics(pred_points, pred_normals, gt_points, gt_normals, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Chamfer L1/L2, normal consistency and F-scores between two sets of surface samples with
    unit normals (both already in one frame)."""
    from scipy.spatial import cKDTree

    to_gt, gt_index = cKDTree(gt_points).query(pred_points, workers=-1)
    to_pred, pred_index = cKDTree(pred_points).query(gt_points, workers=-1)
    result = {
        "chamfer_l1": float((to_gt.mean() + to_pred.mean()) / 2.0),
        "chamfer_l2": float(((to_gt ** 2).mean() + (to_pred ** 2).mean()) / 2.0),
        "normal_consistency": float((np.abs((pred_normals * gt_normals[gt_index]).sum(1)).mean()
                                     + np.abs((gt_normals * pred_normals[pred_index]).sum(1)).mean()) / 2.0),
    }
    for t in thresholds:
        precision = float((to_gt < t).mean())
        recall = float((to_pred < t).mean())
        result[f"fscore@{t:g}"] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return result


def mesh_metrics(pred, gt, *, points: int = 100_000, thresholds=DEFAULT_THRESHOLDS,
                 normalize: str = "each", seed: int = 0) -> dict:
    """Compare two ``trimesh.Trimesh``; returns a JSON-ready dict (the ``kubik 3d eval --json`` output)."""
    from .io import normalize as normalize_mesh
    from ..sdf import MeshSDF

    if normalize == "each":
        pred, _ = normalize_mesh(pred, margin=1.0)
        gt, _ = normalize_mesh(gt, margin=1.0)
    elif normalize == "gt":
        gt, frame = normalize_mesh(gt, margin=1.0)
        pred = frame.apply(pred)
    elif normalize != "none":
        raise ValueError(f"normalize must be 'each', 'gt' or 'none', not {normalize!r}")
    rng = np.random.default_rng(seed)
    pred_points, pred_normals = sample_surface(pred, points, rng)
    gt_points, gt_normals = sample_surface(gt, points, rng)
    result = {"normalization": normalize, "points": points,
              **surface_metrics(pred_points, pred_normals, gt_points, gt_normals, thresholds)}

    lo = np.minimum(pred.bounds[0], gt.bounds[0])
    hi = np.maximum(pred.bounds[1], gt.bounds[1])
    volume_points = rng.uniform(lo, hi, size=(points, 3))
    inside_pred = MeshSDF(pred.vertices, pred.faces).contains(volume_points)
    inside_gt = MeshSDF(gt.vertices, gt.faces).contains(volume_points)
    union = np.logical_or(inside_pred, inside_gt).sum()
    result["volume_iou"] = float(np.logical_and(inside_pred, inside_gt).sum() / union) if union else 0.0
    return result
