"""CUDA engine of :class:`.MeshSDF`: the CPU engine's own per-point code, run by GPU threads.

:func:`.cpu.query_points` - the warm-started closest-triangle search and the exact carried
sign - is plain numba code that allocates nothing (its scratch space comes from the caller), so
numba's CUDA target compiles it unchanged into a kernel. Each GPU thread takes a run of ``RUN``
consecutive points in Morton order, as a CPU thread takes a chunk; the tree's arrays are
uploaded once per mesh. Same algorithm, same float64 arithmetic (both fuse multiply-adds, where
the compilers may choose differently): the two paths give the same distances to rounding and the
same signs.

Why not a library kernel: Warp's BVH closest-point query, the previous CUDA path, ran at only
0.9-3.1 M pts/s on an H100 (benchmarks/HISTORY.md), about what this engine now does on 2 CPU
cores, with float32 distances up to 4e-4 off, and its wheel (149 MB) is an install of its own.
numba is already a dependency; its CUDA target needs the NVIDIA driver and NVVM (the
``cuda-toolkit``/``nvidia-cuda-nvcc`` wheels that CUDA builds of PyTorch bring, or a CUDA
toolkit).

float64 throughout: fast on data-centre GPUs (an H100 does half its float32 rate); consumer GPUs
run float64 at 1/64 of their float32 rate, where this engine is still several times a CPU's.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, int64, njit
from numba.core import config

from .cpu import _STACK, BRANCHING, RECENT, TriangleTree, _kernel_inputs, query_points, sorted_query

RUN = 32    # consecutive points per GPU thread: warm starts and carried signs work along a run
BLOCK = 64  # threads per block (each holds ~2 KB of stack in local memory)


def cuda_device_count() -> int:
    """GPUs numba's CUDA target can compile for and run on: 0 without a driver, without NVVM
    (the compiler library; CUDA builds of torch do not all bring it) or without numba's CUDA
    support. :func:`cuda_missing` says which."""
    return 0 if cuda_missing() else len(cuda.gpus)


def cuda_missing() -> str | None:
    """Why the CUDA engine cannot run here, or None when it can."""
    try:
        if not cuda.is_available():
            return "numba finds no CUDA driver or GPU"
        if not config.ENABLE_CUDASIM:
            from numba.cuda.cudadrv import nvvm

            nvvm.NVVM()
    except Exception as error:  # numba built without CUDA, a broken driver, no libNVVM
        return f"numba's CUDA target is not usable: {error}".strip()
    return None


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
def query_kernel(points, run_length, max_distance,
                 m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12,
                 c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12,
                 cone_bound, h0, h1, h2, out_distance, out_face, out_winding):
    """:func:`.cpu.query_points` on the run of ``run_length`` points that belongs to this thread;
    m0..m12 and c0..c12 are the mesh's and the cones' :meth:`TriangleTree.arrays`, h0..h2 the
    boundary chain's tree (``TriangleTree.chain``)."""
    run = cuda.grid(1)
    count = points.shape[0]
    lo = run * run_length
    if lo >= count:
        return
    hi = lo + run_length if lo + run_length < count else count  # (the builtin min does not compile for CUDA)
    mesh = (_plain(m0), _plain(m1), _plain(m2), _plain(m3), _plain(m4), _plain(m5), _plain(m6), _plain(m7),
            _plain(m8), _plain(m9), _plain(m10), _plain(m11), _plain(m12))
    cone = (_plain(c0), _plain(c1), _plain(c2), _plain(c3), _plain(c4), _plain(c5), _plain(c6), _plain(c7),
            _plain(c8), _plain(c9), _plain(c10), _plain(c11), _plain(c12))
    stack = cuda.local.array(_STACK, int64)
    stack_bound = cuda.local.array(_STACK, float64)
    child_bound = cuda.local.array(BRANCHING, float64)
    child_node = cuda.local.array(BRANCHING, int64)
    lane_bound = cuda.local.array(BRANCHING, float64)
    recent = cuda.local.array((RECENT, 6), float64)
    chain = (_plain(h0), _plain(h1), _plain(h2))
    query_points(_plain(points), lo, hi, max_distance, mesh, cone, _plain(cone_bound), chain, _plain(out_distance),
                 _plain(out_face), _plain(out_winding), stack, stack_bound, child_bound, child_node, lane_bound,
                 recent)


def morton_order_tensor(points):
    """:func:`.cpu.query_order` for a torch tensor [N, 3], on the tensor's device (the same
    order: same 128^3 Morton codes, stable sort)."""
    import torch

    bits = 7
    cells = ((points + 1.0) * (0.5 * (1 << bits))).to(torch.int64).clamp_(0, (1 << bits) - 1)
    code = torch.zeros(len(points), dtype=torch.int64, device=points.device)
    for bit in range(bits):
        for axis in range(3):
            code |= ((cells[:, axis] >> bit) & 1) << (3 * bit + axis)
    return torch.sort(code, stable=True).indices


def _torch_on_gpu():
    """torch, where it can hold tensors on the GPU (it sorts the points there), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


class CudaTree:
    """A mesh tree's arrays on one GPU, queried like :func:`.cpu.signed_query`.

    With a CUDA build of torch, the points are put in Morton order on the GPU and nothing but
    the inputs and results crosses the bus (the host's numpy sort costs ~0.5 us per point, more
    than the kernel); without one (numba's simulator in the tests), on the host.
    """

    def __init__(self, tree: TriangleTree, device_index: int = 0):
        self.tree = tree
        self.device_index = device_index
        mesh, cone, cone_bound, chain = _kernel_inputs(tree)
        with cuda.gpus[device_index]:
            self._arrays = [cuda.to_device(np.ascontiguousarray(a)) for a in (*mesh, *cone, cone_bound, *chain)]
        self._face_order = None  # tree.order as a torch tensor on the GPU, made on first use

    def signed_query(self, points: np.ndarray, max_distance: float):
        """Exact distance (clipped at ``max_distance``), closest face (original indices, -1 beyond
        it) and winding number of normalised points [N, 3] (numpy in, numpy out)."""
        torch = _torch_on_gpu()
        if torch is None:
            return sorted_query(self.tree, points, lambda sorted_points: self._run_host(sorted_points, max_distance))
        on_gpu = torch.from_numpy(np.ascontiguousarray(points, np.float64)).to(f"cuda:{self.device_index}")
        return tuple(t.cpu().numpy() for t in self.signed_query_tensor(on_gpu, max_distance))

    def signed_query_tensor(self, points, max_distance: float):
        """:meth:`signed_query` for a float64 torch tensor [N, 3] on this GPU; tensors out."""
        import torch

        order = morton_order_tensor(points)
        distance, face, winding = self.launch(points[order].contiguous(), max_distance)
        if self._face_order is None:
            self._face_order = torch.from_numpy(self.tree.order).to(points.device)
        face = torch.where(face >= 0, self._face_order[face.clamp(min=0)], -1)
        out = [torch.empty_like(t) for t in (distance, face, winding)]
        for target, value in zip(out, (distance, face, winding)):
            target[order] = value
        return tuple(out)

    def launch(self, sorted_points, max_distance: float, *, run_length: int = RUN, block: int = BLOCK):
        """One kernel launch on torch's current stream over points already in Morton order (a
        float64 tensor [N, 3] on this GPU): distance, sorted-triangle index, winding number."""
        import torch

        count = len(sorted_points)
        device = sorted_points.device
        distance = torch.empty(count, dtype=torch.float64, device=device)
        face = torch.empty(count, dtype=torch.int64, device=device)
        winding = torch.empty(count, dtype=torch.float64, device=device)
        handle = torch.cuda.current_stream(device).cuda_stream
        with cuda.gpus[self.device_index]:
            stream = cuda.external_stream(handle) if handle else cuda.default_stream()
            query_kernel[_blocks(count, run_length, block), block, stream](
                cuda.as_cuda_array(sorted_points), run_length, float(max_distance), *self._arrays,
                cuda.as_cuda_array(distance), cuda.as_cuda_array(face), cuda.as_cuda_array(winding))
        return distance, face, winding

    def _run_host(self, sorted_points: np.ndarray, max_distance: float):
        count = len(sorted_points)
        with cuda.gpus[self.device_index]:
            points = cuda.to_device(sorted_points)
            distance = cuda.device_array(count, np.float64)
            face = cuda.device_array(count, np.int64)
            winding = cuda.device_array(count, np.float64)
            query_kernel[_blocks(count, RUN, BLOCK), BLOCK](points, RUN, float(max_distance), *self._arrays,
                                                          distance, face, winding)
            return distance.copy_to_host(), face.copy_to_host(), winding.copy_to_host()


def _blocks(count: int, run_length: int, block: int) -> int:
    return max(1, math.ceil(math.ceil(count / run_length) / block))
