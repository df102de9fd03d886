"""CUDA engine of :class:`~.sdf.MeshSDF`: the CPU engine's own per-point code, run by GPU threads.

:func:`.sdf_cpu.query_points` - the warm-started closest-triangle search and the exact carried
sign - is plain numba code that allocates nothing (its scratch space comes from the caller), so
numba's CUDA target compiles it unchanged into a kernel. Each GPU thread takes a run of ``RUN``
consecutive points in Morton order, as a CPU thread takes a chunk; the tree's arrays are
uploaded once per mesh. Same algorithm, same float64 arithmetic: the two paths give the same
distances (to rounding: the GPU may fuse a multiply and an add) and the same signs.

Why not a library kernel: Warp's BVH closest-point query, the previous CUDA path, ran at only
0.9-3.1 M pts/s on an H100 (benchmarks/RESULTS.md), 2-5x this engine on 2 CPU cores, with
float32 distances up to 4e-4 off, and its wheel (149 MB) is an install of its own. numba is already a dependency; its CUDA
target needs the NVIDIA driver and NVVM (the ``cuda-toolkit``/``nvidia-cuda-nvcc`` wheels that
CUDA builds of PyTorch bring, or a CUDA toolkit).

float64 throughout: fast on data-centre GPUs (an H100 does half its float32 rate); consumer GPUs
run float64 at 1/64 of their float32 rate, where this engine is still several times a CPU's.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, int64, njit
from numba.core import config

from .sdf_cpu import _STACK, BRANCHING, RECENT, TriangleTree, _kernel_inputs, query_points, sorted_query

RUN = 32    # consecutive points per GPU thread: warm starts and carried signs work along a run
BLOCK = 64  # threads per block (each holds ~2 KB of stack in local memory)


def cuda_device_count() -> int:
    """GPUs numba's CUDA target can run on (0 without a driver or numba's CUDA support)."""
    try:
        return len(cuda.gpus) if cuda.is_available() else 0
    except Exception:  # numba built without CUDA, a broken driver: the CPU path remains
        return 0


if config.ENABLE_CUDASIM:
    # numba's CUDA simulator (the tests on machines without a GPU) runs the kernel as Python and
    # wraps its arrays; the compiled body needs the plain arrays back.
    def _plain(array):
        return array._item._ary
else:
    @njit(inline="always")  # a CPU-style function: numba compiles it for the GPU where it is called
    def _plain(array):
        return array


@cuda.jit(cache=True)
def query_kernel(points, max_distance,
                 m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10,
                 c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10,
                 cone_bound, out_distance, out_face, out_winding):
    """:func:`.sdf_cpu.query_points` on the run of ``RUN`` points that belongs to this thread;
    m0..m10 and c0..c10 are the mesh's and the cones' :meth:`TriangleTree.arrays`."""
    run = cuda.grid(1)
    count = points.shape[0]
    lo = run * RUN
    if lo >= count:
        return
    hi = lo + RUN if lo + RUN < count else count  # (the builtin min does not compile for CUDA)
    mesh = (_plain(m0), _plain(m1), _plain(m2), _plain(m3), _plain(m4), _plain(m5), _plain(m6), _plain(m7),
            _plain(m8), _plain(m9), _plain(m10))
    cone = (_plain(c0), _plain(c1), _plain(c2), _plain(c3), _plain(c4), _plain(c5), _plain(c6), _plain(c7),
            _plain(c8), _plain(c9), _plain(c10))
    stack = cuda.local.array(_STACK, int64)
    stack_bound = cuda.local.array(_STACK, float64)
    child_bound = cuda.local.array(BRANCHING, float64)
    child_node = cuda.local.array(BRANCHING, int64)
    lane_bound = cuda.local.array(BRANCHING, float64)
    recent = cuda.local.array((RECENT, 5), float64)
    query_points(_plain(points), lo, hi, max_distance, mesh, cone, _plain(cone_bound), _plain(out_distance),
                 _plain(out_face), _plain(out_winding), stack, stack_bound, child_bound, child_node, lane_bound,
                 recent)


class CudaTree:
    """A mesh tree's arrays on one GPU, queried like :func:`.sdf_cpu.signed_query`."""

    def __init__(self, tree: TriangleTree, device_index: int = 0):
        self.tree = tree
        self.device_index = device_index
        mesh, cone, cone_bound = _kernel_inputs(tree)
        with cuda.gpus[device_index]:
            self._arrays = [cuda.to_device(np.ascontiguousarray(a)) for a in (*mesh, *cone, cone_bound)]

    def signed_query(self, points: np.ndarray, max_distance: float):
        """Exact distance (clipped at ``max_distance``), closest face (original indices, -1 beyond
        it) and winding number of normalised points [N, 3]."""
        return sorted_query(self.tree, points, lambda sorted_points: self._run(sorted_points, max_distance))

    def _run(self, sorted_points: np.ndarray, max_distance: float):
        count = len(sorted_points)
        with cuda.gpus[self.device_index]:
            points = cuda.to_device(sorted_points)
            distance = cuda.device_array(count, np.float64)
            face = cuda.device_array(count, np.int64)
            winding = cuda.device_array(count, np.float64)
            blocks = max(1, math.ceil(math.ceil(count / RUN) / BLOCK))
            query_kernel[blocks, BLOCK](points, float(max_distance), *self._arrays, distance, face, winding)
            return distance.copy_to_host(), face.copy_to_host(), winding.copy_to_host()
