"""The CUDA path of the SDF engine (sdf/cuda.py), checked on machines without a GPU as well:

* its kernel compiles to PTX for an H100 (sm_90) with the argument types MeshSDF launches it
  with, which catches code the CPU compiler accepts and numba's CUDA target refuses;
* numba's CUDA simulator runs the kernel's launch, indexing and transfers (each thread's body is
  the compiled CPU code) and must give the CPU path's distances and signs;
* on a GPU machine, the real kernel against the CPU path and libigl.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.mesh.io import load_mesh, normalize
from kubik_core.recon3d.sdf import MeshSDF
from kubik_core.recon3d.sdf.cuda import cuda_device_count

REPO = Path(__file__).resolve().parents[3]


def test_kernel_compiles_for_an_h100(monkeypatch):
    import numba
    from numba import cuda

    from kubik_core.recon3d.sdf.cpu import _kernel_inputs
    from kubik_core.recon3d.sdf.cuda import query_kernel

    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as error:  # no libNVVM (it comes with CUDA builds of torch, or a CUDA toolkit)
        pytest.skip(f"numba finds no NVVM to compile CUDA code with: {error}")
    # Device functions are compiled for the current GPU's architecture; there may be none here.
    import numba.cuda.dispatcher

    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    holed = trimesh.creation.icosphere(subdivisions=2)
    holed = trimesh.Trimesh(holed.vertices, holed.faces[4:], process=False)
    mesh, cone, cone_bound, chain = _kernel_inputs(MeshSDF(holed.vertices, holed.faces)._tree)
    points = np.zeros((5, 3))
    arguments = (points, 32, 1.0, *mesh, *cone, cone_bound, *chain, np.zeros(5), np.zeros(5, np.int64), np.zeros(5))
    ptx, _ = cuda.compile_ptx(query_kernel.py_func, tuple(numba.typeof(a) for a in arguments), cc=(9, 0))
    assert ".target sm_90" in ptx
    assert "call.uni" not in ptx  # the whole per-point code inlined into one kernel


SIMULATED = textwrap.dedent("""
    import json, sys
    import numpy as np, trimesh
    from kubik_core.recon3d.mesh.io import load_mesh, normalize
    from kubik_core.recon3d.sdf import MeshSDF
    from kubik_core.recon3d.sdf.cuda import RUN

    mesh, _ = normalize(load_mesh(sys.argv[1]))
    rng = np.random.default_rng(3)
    surface, _ = trimesh.sample.sample_surface(mesh, 2500, seed=4)
    points = np.concatenate([surface + rng.normal(size=surface.shape) * 0.02,
                             rng.uniform(-1, 1, (2500 + RUN // 2, 3))])  # a last run cut short
    result = {}
    for device in ("cuda", "cpu"):
        sdf = MeshSDF(mesh.vertices, mesh.faces, device=device)
        distance, face = sdf.query(points)
        truncated = sdf(points, truncation=0.05)
        result[device] = [sdf.device, distance.tolist(), face.tolist(), truncated.tolist()]
    # Cut open across its middle, the bunny's cones would be everywhere: signs afresh per point.
    cut = np.asarray(mesh.faces)[np.asarray(mesh.triangles_center)[:, 1] > -0.2]
    for device in ("cuda", "cpu"):
        sdf = MeshSDF(mesh.vertices, cut, device=device)
        result[device + " cut"] = [sdf._tree.carried, sdf(points[::16]).tolist()]
    print(json.dumps(result))
""")


def test_simulated_gpu_gives_the_cpu_paths_distances_and_signs(bunny_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", SIMULATED, str(bunny_path)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    result = json.loads(run.stdout.strip().splitlines()[-1])
    gpu, cpu = result["cuda"], result["cpu"]
    assert gpu[0] == "cuda:0" and cpu[0] == "cpu"
    gpu_distance, cpu_distance = np.array(gpu[1]), np.array(cpu[1])
    assert np.array_equal(gpu_distance, cpu_distance)  # values and signs, the holed bunny
    assert 0.1 < (gpu_distance < 0).mean() < 0.6
    # The closest face may differ where two faces are equally close (shared vertex or edge).
    assert np.mean(np.array(gpu[2]) != np.array(cpu[2])) < 0.01
    assert np.array_equal(np.array(gpu[3]), np.array(cpu[3]))
    (gpu_carried, gpu_cut), (cpu_carried, cpu_cut) = result["cuda cut"], result["cpu cut"]
    assert not gpu_carried and not cpu_carried
    assert np.array_equal(np.array(gpu_cut), np.array(cpu_cut))


def test_points_are_ordered_on_the_gpu_as_on_the_host():
    """The GPU path sorts with torch: the order must be the CPU path's (here on CPU tensors)."""
    import torch

    from kubik_core.recon3d.sdf.cpu import query_order
    from kubik_core.recon3d.sdf.cuda import morton_order_tensor

    rng = np.random.default_rng(7)
    points = np.concatenate([rng.uniform(-1.2, 1.2, (20000, 3)), rng.normal(size=(20000, 3)) * 0.01,
                             np.repeat(rng.uniform(-1, 1, (50, 3)), 40, axis=0)])  # ties keep input order
    np.testing.assert_array_equal(morton_order_tensor(torch.from_numpy(points)).numpy(), query_order(points))


def test_tensor_queries_sort_map_faces_and_scatter_back_like_the_host_path(bunny_path, monkeypatch):
    """signed_query_tensor's own steps (Morton order on the tensor's device, sorted-triangle ->
    original face, results back in input order), with its one kernel launch replaced by the
    CPU kernel on the same sorted points (CPU tensors stand in for GPU ones)."""
    import torch

    from kubik_core.recon3d.sdf.cpu import _kernel_inputs, query_chunk, signed_query
    from kubik_core.recon3d.sdf.cuda import CudaTree

    mesh, _ = normalize(load_mesh(bunny_path))
    tree = MeshSDF(mesh.vertices, mesh.faces)._tree
    points = np.random.default_rng(8).uniform(-1, 1, (3000, 3))

    def launch(self, sorted_points, max_distance, **_):
        count = len(sorted_points)
        out = np.empty(count), np.empty(count, np.int64), np.empty(count)
        query_chunk(sorted_points.numpy(), max_distance, *_kernel_inputs(self.tree), *out)
        return tuple(torch.from_numpy(a) for a in out)

    monkeypatch.setattr(CudaTree, "launch", launch)
    on_device = CudaTree.__new__(CudaTree)
    on_device.tree, on_device.device_index, on_device._face_order = tree, 0, None
    got = on_device.signed_query_tensor(torch.from_numpy(points), 1.0e6)
    want = signed_query(tree, points, 1.0e6, threads=1)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.numpy(), b)


def test_cuda_without_a_gpu_is_a_clear_error():
    if cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    box = trimesh.creation.box()
    with pytest.raises(ValueError, match="cannot run it .*no CUDA driver"):
        MeshSDF(box.vertices, box.faces, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        MeshSDF(box.vertices, box.faces, device="gpu")
    assert MeshSDF(box.vertices, box.faces, device="auto").device == "cpu"


def test_cuda_matches_the_cpu_reference(bunny_path):
    """On a GPU machine: CUDA distances equal the CPU path's and libigl's, signs the CPU path's."""
    if cuda_device_count() == 0:
        pytest.skip("no CUDA device")
    import igl
    import torch

    mesh, _ = normalize(load_mesh(bunny_path))
    rng = np.random.default_rng(5)
    surface, _ = trimesh.sample.sample_surface(mesh, 50000, seed=6)
    points = np.concatenate([surface + rng.normal(size=surface.shape) * 0.01, rng.uniform(-1, 1, (50000, 3))])
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    squared, _, _ = igl.point_mesh_squared_distance(points, v, f)
    sdf = MeshSDF(v, f, device="cuda")
    distance = sdf(points)
    np.testing.assert_allclose(np.abs(distance), np.sqrt(squared), atol=1e-6)
    cpu = MeshSDF(v, f, device="cpu")(points)
    np.testing.assert_allclose(distance, cpu, rtol=1e-6, atol=1e-7)  # a fused multiply-add may round apart
    assert np.array_equal(cpu < 0, distance < 0)
    if torch.cuda.is_available():
        on_device = sdf.query_tensor(torch.from_numpy(points).cuda())
        assert on_device.is_cuda and np.array_equal(on_device.cpu().numpy(), distance)
