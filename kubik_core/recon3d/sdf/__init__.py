"""Signed distance from a triangle mesh to query points: exact distance, winding-number sign.

Engine (chosen by measurement, see benchmarks/RESULTS.md "sdf_engines.py", its history in
HISTORY.md):

* on the CPU, :mod:`.cpu`: one tree over the triangles (oriented boxes for the exact
  closest-point search, dipole + quadrupole moments for the fast winding number), numba loops
  on a thread pool, queries in Morton order with warm-started searches and exact signs carried
  between neighbouring points by counting crossings. On a 100k-face bunny and 2 cores it measured
  1.07-1.23 M points/s, 16x point-cloud-utils and ~10x the previous engine (Warp's CPU BVH query
  + libigl's winding number).
* on CUDA, :mod:`.cuda`: the same per-point code compiled by numba's CUDA target, each GPU
  thread taking a run of consecutive points, so that both paths give the same distances and
  signs (float64 on both).
* sign: the generalized winding number (Jacobson et al. 2013): inside where w > 0.5. Unlike ray
  parity or the closest face's pseudo-normal, it stays right on meshes with holes, several
  shells and self-intersections. It is carried exactly (the integer winding number of the mesh
  closed by cones over its holes, minus the cones'); the fast Barnes-Hut approximation (Barill
  et al. 2018) only restarts it where a crossing is too close to call, and answers
  :meth:`MeshSDF.winding_number`. Open meshes whose cones would reach everywhere (scenes of
  open parts, soups, flipped faces) get each point's winding number afresh; on those with a
  short boundary (open sheets) a value known closely is carried to the next point where a
  proven bound of its change (the boundary's Biot-Savart field) keeps it off 1/2.

Distances are negative inside (the project's convention). The mesh is normalised internally into
[-1, 1]^3 (the tree's grids and tolerances assume it); results are in the mesh's own units.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ..errors import MeshError

_CHUNK = 1 << 20       # points per call into the engine (progress is reported between calls)
MAX_REACH = 1.0e5      # query points within this many half extents of the mesh's centre get exact distances
_FAR = 1.0e6           # the engine's search radius (normalised units), beyond MAX_REACH + the mesh
_CUDA_CHUNK = 1 << 23  # a GPU needs more in flight: 8M points hold ~1 GB of its memory


def resolve_device(device: str | None) -> str:
    """``None``/"auto" -> "cuda:0" when a GPU can run the CUDA engine, else "cpu"; "cuda" -> "cuda:0"."""
    if device == "cpu":
        return device
    from .cuda import cuda_device_count, cuda_missing

    count = cuda_device_count()
    if device in (None, "auto"):
        return "cuda:0" if count > 0 else "cpu"
    device = str(device)
    if device == "cuda":
        device = "cuda:0"
    if not (device == "cpu" or device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    if device != "cpu" and int(device[5:]) >= count:
        why = cuda_missing() or f"it sees {count} GPU(s)"
        raise ValueError(f"device {device!r} was asked for, but the CUDA engine cannot run it ({why}; "
                         "it needs the NVIDIA driver and the CUDA compiler's NVVM: conda install cuda-nvcc, or pip "
                         "install nvidia-cuda-nvcc-cu12 for CUDA 12); use 'cpu'")
    return device


class MeshSDF:
    """Signed distance queries against one triangle mesh, on the CPU or a CUDA device.

    >>> sdf = MeshSDF(mesh.vertices, mesh.faces, device="cpu")
    >>> d = sdf(points)            # float32 [N], negative inside, in the mesh's units
    >>> d, face = sdf.query(points)  # also the index of the closest face
    """

    def __init__(self, vertices, faces, *, device: str | None = "cpu", threads: int | None = None):
        vertices = np.asarray(vertices, np.float64)
        faces = np.asarray(faces, np.int64)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
            raise MeshError(f"vertices must be a non-empty [V, 3] array, got shape {vertices.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise MeshError(f"faces must be a non-empty [F, 3] array, got shape {faces.shape}")
        if not np.isfinite(vertices).all():
            raise MeshError("vertices contain NaN or infinite coordinates")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise MeshError(f"faces index vertices outside 0..{len(vertices) - 1}")
        lo, hi = vertices.min(0), vertices.max(0)
        self.center = (lo + hi) / 2.0
        self.scale = float((hi - lo).max()) / 2.0
        if not self.scale > 0:
            raise MeshError("the mesh has zero extent")
        self.device = resolve_device(device)
        self.threads = max(1, threads or len(os.sched_getaffinity(0)))
        self._vertices = (vertices - self.center) / self.scale
        self._faces = faces
        from .cpu import build_tree

        self._tree = build_tree(self._vertices, faces)
        self._cuda = None
        if self.device != "cpu":
            from .cuda import CudaTree

            self._cuda = CudaTree(self._tree, int(self.device[5:]))

    def __call__(self, points, *, truncation: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return self.query(points, truncation=truncation, progress=progress)[0]

    def query(self, points, *, truncation: float | None = None,
              progress: Callable[[int, int], None] | None = None):
        """Return ``(signed_distance float32 [N], closest_face int32 [N])`` for points [N, 3].

        ``truncation`` (mesh units) clips distances to [-truncation, truncation]; points farther
        than that get exactly +-truncation and face -1, and cost much less to compute.
        """
        points = np.asarray(points, np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be an [N, 3] array, got shape {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError(f"{int((~np.isfinite(points)).any(1).sum())} query points are NaN or infinite")
        if truncation is not None and not truncation > 0:
            raise ValueError(f"truncation must be positive, got {truncation!r}")
        with np.errstate(over="ignore"):   # 1e308 - (-1e308) is inf: refused below, not a warning
            self._check_reach(np.abs(points - self.center).max(initial=0.0))
        max_distance = _FAR if truncation is None else truncation / self.scale
        distance = np.empty(len(points), np.float32)
        face = np.empty(len(points), np.int32)
        chunk = _CHUNK if self._cuda is None else _CUDA_CHUNK
        for start in range(0, len(points), chunk):
            stop = min(start + chunk, len(points))
            self._query_part(points[start:stop], max_distance, distance[start:stop], face[start:stop])
            if progress is not None:
                progress(stop, len(points))
        return distance, face

    def _check_reach(self, farthest: float) -> None:
        """Refuse points so far away that the engine's search radius would cut their distance
        short (a silently wrong answer otherwise)."""
        reach = float(farthest) / self.scale
        if not reach <= MAX_REACH:
            raise ValueError(f"query points lie up to {reach:.3g} times the mesh's half extent from its centre; "
                             f"distances are exact within {MAX_REACH:.0e} of it: move the points closer or "
                             "rescale the mesh")

    def _query_part(self, points: np.ndarray, max_distance: float, out_distance, out_face) -> None:
        from .cpu import signed_float32, signed_query

        if self._cuda is not None:
            local = (points - self.center) / self.scale
            distance, face, winding = self._cuda.signed_query(local, max_distance)
        else:  # normalised on the fly
            distance, face, winding = signed_query(self._tree, points, max_distance, threads=self.threads,
                                                   center=self.center, scale=self.scale)
        signed_float32(distance, face, winding, self.scale, out_distance, out_face)

    def query_tensor(self, points):
        """Signed distances of a torch tensor [N, 3], as a float32 tensor on the tensor's device.

        For training loops that draw fresh SDF samples; computed exactly as :meth:`query`. On the
        GPU this SDF lives on, the points never leave it; elsewhere they go through host memory.
        """
        import torch

        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be an [N, 3] tensor, got shape {tuple(points.shape)}")
        if self._cuda is None or not points.is_cuda or points.device.index != self._cuda.device_index:
            return torch.from_numpy(self(points.detach().cpu().numpy())).to(points.device)
        if not bool(torch.isfinite(points).all()):
            raise ValueError("query points are NaN or infinite")
        center = torch.as_tensor(self.center, dtype=torch.float64, device=points.device)
        local = (points.detach().to(torch.float64) - center) / self.scale
        self._check_reach(float(local.abs().max()) * self.scale if len(local) else 0.0)
        parts = []
        for start in range(0, len(local), _CUDA_CHUNK):
            distance, _, winding = self._cuda.signed_query_tensor(local[start:start + _CUDA_CHUNK], _FAR)
            parts.append(torch.where(winding > 0.5, -distance, distance))
        empty = torch.zeros(0, dtype=torch.float64, device=points.device)
        return (torch.cat(parts) if parts else empty).to(torch.float32) * np.float32(self.scale)

    def winding_number(self, points, *, normalized: bool = False) -> np.ndarray:
        """Generalized winding number of each point (about 1 inside, 0 outside), on the CPU."""
        from .cpu import winding_numbers

        local = np.asarray(points, np.float64)
        if not normalized:
            local = (local - self.center) / self.scale
        return winding_numbers(self._tree, local, threads=self.threads)

    def contains(self, points) -> np.ndarray:
        """Inside test (winding number > 0.5), for volume IoU and occupancy labels."""
        return self.winding_number(points) > 0.5


def warm_up(device: str | None = "cpu") -> dict:
    """Compile every kernel :class:`MeshSDF` runs on ``device``, or load it from numba's on-disk
    cache, so that the first real query does not stall (a fresh install compiles for about 20 s).

    The kernels take the same argument types for every mesh (closed or open, with or without
    closing cones, any size) and every point array (see :func:`.cpu.kernel_points`), so this one
    pass over a closed and an open octahedron serves all later meshes. Returns what happened:
    ``{"device", "ready", "compiled", "from_cache", "seconds"}``: how many CPU kernels are ready
    in this process, how many were compiled by this call and how many loaded from numba's cache (kept beside the package, or in a per-user folder where
    that is read-only; helpers inlined into a cached kernel are not counted again)."""
    import time

    from numba.core.registry import CPUDispatcher

    from . import cpu

    start = time.perf_counter()
    kernels = [k for k in vars(cpu).values() if isinstance(k, CPUDispatcher)]
    before = {id(k): (k.stats.cache_hits.copy(), k.stats.cache_misses.copy()) for k in kernels}
    vertices = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    closed = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    points = np.random.default_rng(0).uniform(-1.2, 1.2, (64, 3))
    resolved = resolve_device(device)
    for faces in (closed, closed[:4]):  # closed (no cones), then open (closing cones, their bound grid)
        sdf = MeshSDF(vertices, faces, device=resolved, threads=1)
        sdf.query(points)
        sdf.query(points, truncation=0.5)
        sdf.winding_number(points)
    hits = misses = 0
    for k in kernels:
        old_hits, old_misses = before[id(k)]
        hits += sum((k.stats.cache_hits - old_hits).values())
        misses += sum((k.stats.cache_misses - old_misses).values())
    ready = sum(len(k.signatures) for k in kernels)
    return {"device": resolved, "ready": ready, "compiled": misses, "from_cache": hits, "seconds": round(time.perf_counter() - start, 2)}
