"""Training samples from a normalised mesh: surface points, near-surface and uniform SDF samples.

What a shape model trains on (layout of ``samples.npz``, all float32 unless stated, coordinates in
the normalised frame [-1, 1]^3, Y up, SDF negative inside):

==========================  ==========  =======================================================
key                         shape       meaning
==========================  ==========  =======================================================
``surface_points``          [S, 3]      area-weighted points on the surface, then sharp-edge points
``surface_normals``         [S, 3]      unit normal of the face each point lies on
``surface_sharp``           [S] bool    True for the points sampled on sharp edges
``near_points``             [Nn, 3]     surface points moved by Gaussian noise (one width each)
``near_sigma``              [Nn]        the noise width each near point was drawn with
``near_sdf``                [Nn]        signed distance of ``near_points``
``uniform_points``          [Nu, 3]     uniform in the cube [-bound, bound]^3
``uniform_sdf``             [Nu]        signed distance of ``uniform_points``
``near_occupancy``          [Nn] bool   ``near_sdf < 0`` (only when occupancy labels are asked for)
``uniform_occupancy``       [Nu] bool   ``uniform_sdf < 0`` (idem)
``sdf_truncation``          []          0 when distances are exact, else the clip value
``normalization_center``    [3] f64     ``source = normalized * scale + center``
``normalization_scale``     [] f64
==========================  ==========  =======================================================

The signed distances are exact Euclidean distances to the mesh (clipped to +-``sdf_truncation``
when that is > 0), with the sign of the generalized winding number, so open meshes get a sign too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..mesh.io import Normalization
from ..mesh.surface import sample_sharp_edges, sample_surface
from ..sdf import MeshSDF
from ..storage import save_npz_atomic


@dataclass(frozen=True)
class SampleConfig:
    """How many samples of each kind and how they are drawn."""

    surface: int = 65536
    sharp_fraction: float = 0.25        # share of ``surface`` placed on sharp edges, when any exist
    sharp_angle_deg: float = 30.0       # an edge is sharp when its faces' normals differ by more
    near: int = 65536
    near_sigmas: tuple[float, ...] = (0.005, 0.02, 0.05)
    uniform: int = 65536
    uniform_bound: float = 1.0
    truncation: float = 0.0             # 0: exact distances; > 0: clip to +-truncation
    occupancy: bool = False
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ShapeSamples:
    """One mesh's samples, in the layout written to ``samples.npz``."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path) -> None:
        save_npz_atomic(path, self.arrays)


def sample_shape(mesh, normalization: Normalization, config: SampleConfig, sdf: MeshSDF | None = None,
                 *, device: str = "auto") -> ShapeSamples:
    """Draw every sample of ``config`` from a mesh already in the normalised frame."""
    rng = np.random.default_rng(config.seed)
    sdf = sdf or MeshSDF(mesh.vertices, mesh.faces, device=device)

    n_sharp = int(round(config.surface * config.sharp_fraction))
    sharp_points, sharp_normals = sample_sharp_edges(mesh, n_sharp, config.sharp_angle_deg, rng)
    area_points, area_normals = sample_surface(mesh, config.surface - len(sharp_points), rng)
    surface_points = np.concatenate([area_points, sharp_points])
    surface_normals = np.concatenate([area_normals, sharp_normals])
    surface_sharp = np.concatenate([np.zeros(len(area_points), bool), np.ones(len(sharp_points), bool)])

    sigmas = np.asarray(config.near_sigmas, np.float64)
    near_sigma = sigmas[np.arange(config.near) % len(sigmas)]
    base, _ = sample_surface(mesh, config.near, rng)
    near_points = base + rng.normal(size=base.shape) * near_sigma[:, None]

    bound = config.uniform_bound
    uniform_points = rng.uniform(-bound, bound, size=(config.uniform, 3))

    distances = sdf(np.concatenate([near_points, uniform_points]),
                    truncation=config.truncation if config.truncation > 0 else None)
    near_sdf, uniform_sdf = distances[: config.near], distances[config.near:]

    arrays = {
        "surface_points": surface_points.astype(np.float32),
        "surface_normals": surface_normals.astype(np.float32),
        "surface_sharp": surface_sharp,
        "near_points": near_points.astype(np.float32),
        "near_sigma": near_sigma.astype(np.float32),
        "near_sdf": near_sdf.astype(np.float32),
        "uniform_points": uniform_points.astype(np.float32),
        "uniform_sdf": uniform_sdf.astype(np.float32),
        "sdf_truncation": np.float32(config.truncation),
        "normalization_center": np.asarray(normalization.center, np.float64),
        "normalization_scale": np.float64(normalization.scale),
    }
    if config.occupancy:
        arrays["near_occupancy"] = near_sdf < 0
        arrays["uniform_occupancy"] = uniform_sdf < 0
    return ShapeSamples(arrays)
