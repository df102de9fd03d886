"""Held-out quality of shape latents: volume IoU and surface metrics against the dataset's truth.

Used by both trainers every ``--val-every`` steps and at the end of a run (``evaluation.json``).
For each shape: the latent's SDF is queried at the shape's uniform samples (volume IoU of
"inside" = SDF < 0 against the true sign, the occupancy-network protocol on [-1, 1]^3), and a mesh
is extracted at ``resolution`` and compared with the true area-weighted surface samples
(Chamfer L1/L2, normal consistency, F-scores; :func:`..mesh.metrics.surface_metrics`). A latent whose
SDF has no surface gets IoU 0 and no surface metrics (``empty`` counts them).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.shapes import ShapeSet
from ..mesh.metrics import surface_metrics
from ..pipeline import ShapeLatent, sdf_function


def latent_metrics(latent: ShapeLatent, shapes: ShapeSet, indices, *, frames=None, resolution: int = 48,
                   surface_samples: int = 8192, seed: int = 0) -> dict:
    """Mean metrics of latent i against shape ``indices[i]`` of ``shapes``; plus ``per_shape``.
    ``frames[i]`` = (rotation [3, 3], scale) moves the truth into the frame the latent is in
    (:func:`..data.shapes.view_frame`); None = the dataset's own frame."""
    from ..mesh.extract import EmptyShapeError, extract_mesh
    from ..mesh.surface import sample_surface

    rng = np.random.default_rng(seed)
    rows = []
    for i, shape in enumerate(indices):
        sdf = sdf_function(latent, i)
        truth = shapes.arrays
        rotation, scale = frames[i] if frames is not None else (torch.eye(3), 1.0)
        points = scale * truth["uniform_points"][shape] @ rotation.T
        predicted_inside = (sdf(points) < 0).cpu()
        true_inside = truth["uniform_sdf"][shape] < 0
        union = (predicted_inside | true_inside).sum().item()
        row = {"id": shapes.ids[shape],
               "volume_iou": (predicted_inside & true_inside).sum().item() / union if union else 0.0}
        try:
            mesh = extract_mesh(sdf, resolution, device=latent.model.device)
        except EmptyShapeError:
            rows.append({**row, "empty": True})
            continue
        import trimesh

        pred_points, pred_normals = sample_surface(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False),
                                                   surface_samples, rng)
        area = ~truth["surface_sharp"][shape]
        gt_points = (scale * truth["surface_points"][shape][area] @ rotation.T).numpy()
        gt_normals = (truth["surface_normals"][shape][area] @ rotation.T).numpy()
        rows.append({**row, **surface_metrics(pred_points, pred_normals, gt_points, gt_normals)})
    summary = {"shapes": len(rows), "empty": sum(1 for r in rows if r.get("empty"))}
    for key in dict.fromkeys(k for r in rows for k in r):  # every metric, in first-seen order
        values = [r[key] for r in rows if isinstance(r.get(key), float)]
        if values:
            summary[key] = float(np.mean(values))
    summary["per_shape"] = rows
    return summary


def encode_shapes(model, shapes: ShapeSet, indices, *, seed: int = 0) -> torch.Tensor:
    """Posterior means [n, tokens, channels] of shapes ``indices`` from a fixed surface subset."""
    generator = torch.Generator().manual_seed(seed)
    count = model.config.vae.input_points
    out = []
    with torch.no_grad():
        for shape in indices:
            pick = torch.randperm(shapes.arrays["surface_points"].shape[1], generator=generator)[:count]
            points = shapes.arrays["surface_points"][shape, pick][None].to(model.device)
            normals = shapes.arrays["surface_normals"][shape, pick][None].to(model.device)
            out.append(model.vae.encode(points, normals)[0])
    return torch.cat(out)
