"""The CUDA SDF engine on a GPU: end-to-end and kernel-only rates, and the launch shape.

Needs a CUDA GPU, numba's CUDA target and a CUDA build of torch. On the holed and the watertight
Stanford bunny (as in sdf_engines.py) and the same point mix (half near the surface, half
uniform in [-1, 1]^3), with the points already on the GPU as float64 tensors:

* ``query_tensor``: what a training loop pays (Morton sort on the GPU, kernel, scatter back);
* the kernel alone, on pre-sorted points, for each run length (consecutive points per thread)
  and block size given;
* agreement with the CPU engine on a subset (largest distance difference, sign agreement), and
  the GPU's peak memory.

    python benchmarks/sdf_cuda_tuning.py [--points 4000000] [--runs 8 16 32 64] [--blocks 32 64 128]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def timed(function, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, the GPU synchronised around each."""
    import torch

    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=4_000_000)
    parser.add_argument("--runs", type=int, nargs="*", default=[8, 16, 32, 64])
    parser.add_argument("--blocks", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--check", type=int, default=200_000, help="points compared with the CPU engine")
    args = parser.parse_args()

    import torch
    import trimesh

    from kubik_core.recon3d.sdf import MeshSDF
    from kubik_core.recon3d.sdf.cuda import cuda_device_count, morton_order_tensor
    from sdf_engines import make_points, prepare_meshes

    if cuda_device_count() == 0 or not torch.cuda.is_available():
        print("# sdf_cuda_tuning: skipped, it needs a CUDA GPU (numba and torch)")
        return

    print(f"# sdf_cuda_tuning: {torch.cuda.get_device_name(0)}, {args.points:,} points, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in prepare_meshes(Path(tmp)).items():
            mesh = trimesh.load(path, process=False)
            points = make_points(mesh, args.points)
            sdf = MeshSDF(mesh.vertices, mesh.faces, device="cuda")
            on_gpu = torch.from_numpy(points).cuda()
            start = time.perf_counter()
            sdf.query_tensor(on_gpu[:1000])  # compiles the kernel (cached on disk after the first run)
            print(f"{name}: first call (compile or load) {time.perf_counter() - start:.1f} s", flush=True)
            torch.cuda.reset_peak_memory_stats()
            seconds = timed(lambda: sdf.query_tensor(on_gpu))
            print(f"{name}: query_tensor end to end {args.points / seconds / 1e6:8.1f} M pts/s  "
                  f"(peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB)", flush=True)
            seconds = timed(lambda: sdf(points))
            print(f"{name}: numpy in and out       {args.points / seconds / 1e6:8.1f} M pts/s", flush=True)
            local = (on_gpu - torch.as_tensor(sdf.center, device="cuda")) / sdf.scale
            order = morton_order_tensor(local)
            seconds = timed(lambda: morton_order_tensor(local))
            print(f"{name}: Morton sort alone       {args.points / seconds / 1e6:8.1f} M pts/s", flush=True)
            ordered = local[order].contiguous()
            for run in args.runs:
                for block in args.blocks:
                    seconds = timed(lambda: sdf._cuda.launch(ordered, 1.0e6, run_length=run, block=block))
                    print(f"{name}: kernel, run {run:3d} block {block:4d}  {args.points / seconds / 1e6:8.1f} M pts/s",
                          flush=True)
            seconds = timed(lambda: sdf._cuda.launch(ordered, 0.1 / sdf.scale))
            print(f"{name}: kernel, truncated at 0.1 {args.points / seconds / 1e6:8.1f} M pts/s", flush=True)
            check = points[:: max(1, len(points) // args.check)]
            gpu = sdf(check)
            cpu = MeshSDF(mesh.vertices, mesh.faces, device="cpu")(check)
            print(f"{name}: vs CPU engine on {len(check):,} points: max |difference| "
                  f"{np.abs(gpu - cpu).max():.1e}, signs equal {np.mean((gpu < 0) == (cpu < 0)):.6%}", flush=True)


if __name__ == "__main__":
    main()
