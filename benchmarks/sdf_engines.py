"""Mesh -> signed distance engines, measured side by side in one run.

For each mesh (pymeshfix's holed Stanford bunny, ~100k faces, and the same bunny made watertight
by MeshFix) and each engine, a fresh subprocess loads the mesh, queries a fixed point set and
reports its time and peak memory; the parent then scores the signs against libigl's fast winding
number (inside where w > 0.5), computed once per point set.

Point set "mix": half near the surface (Gaussian offsets of width 0.005 / 0.02 / 0.05 around
area-weighted surface samples), half uniform in [-1, 1]^3, mesh normalised into [-0.95, 0.95]^3 -
what `kubik 3d preprocess` queries. Point counts differ per engine (trimesh is slow and
memory-hungry); throughput is points per second of wall time for the query alone (the mesh
structures - BVH, winding-number tree - are built before the clock starts, and the build time is
printed apart).

One line per case: engine, mesh, device, points, Mpts/s, ratio to point-cloud-utils (the
baseline, measured in the same run; libigl where pcu is not installed), sign agreement, peak RSS of the process and its growth
during the query. With a CUDA device (seen by numba) the GPU cases run too.

    python benchmarks/sdf_engines.py [--points 400000] [--gpu-points 2000000] [--engines ...] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CPU_ENGINES = {  # engine -> share of --points it gets (slow baselines get fewer)
    "trimesh": 0.005,
    "pcu": 0.25,   # the baseline of the ratios; libigl when pcu is not installed
    "igl": 0.25,
    "warp-cpu-winding": 0.1,
    "warp-bvh+igl-fwn": 0.25,   # the engine kubik-cpu used before sdf/cpu.py: Warp BVH on all cores + libigl FWN
    "open3d": 0.25,
    "fcpw+igl-fwn": 0.25,   # fcpw's vectorised BVH closest point + libigl's fast winding number sign
    "kubik-cpu": 1.0,
    "kubik-cpu-1thread": 0.25,   # the same on one thread: how it scales with cores
    "kubik-cpu-trunc0.1": 1.0,   # distances clipped to +-0.1 (a truncated-SDF training target)
}
GPU_ENGINES = ("kubik-cuda", "kubik-cuda-trunc0.1", "warp-cuda-winding")  # Warp: where it is installed


def bunny_path() -> Path:
    import pymeshfix

    return Path(pymeshfix.__file__).parent / "examples" / "StanfordBunny.ply"


def prepare_meshes(folder: Path) -> dict[str, Path]:
    """The holed bunny as shipped, and a watertight copy repaired by MeshFix, both normalised."""
    import pymeshfix
    import trimesh

    from kubik_core.recon3d.mesh.io import load_mesh, normalize

    holed, _ = normalize(load_mesh(bunny_path()))
    fixed_v, fixed_f = pymeshfix.clean_from_arrays(np.asarray(holed.vertices), np.asarray(holed.faces))
    watertight = trimesh.Trimesh(fixed_v, fixed_f, process=False)
    paths = {"bunny-holed": folder / "bunny_holed.ply", "bunny-watertight": folder / "bunny_watertight.ply"}
    holed.export(paths["bunny-holed"])
    watertight.export(paths["bunny-watertight"])
    return paths


def make_points(mesh, count: int, seed: int = 0) -> np.ndarray:
    import trimesh

    rng = np.random.default_rng(seed)
    near = count // 2
    base, _ = trimesh.sample.sample_surface(mesh, near, seed=seed)
    sigma = np.array([0.005, 0.02, 0.05])[np.arange(near) % 3]
    points = np.concatenate([base + rng.normal(size=base.shape) * sigma[:, None],
                             rng.uniform(-1.0, 1.0, (count - near, 3))])
    return points


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since exec) of this process. ru_maxrss is not used: after fork
    and exec it keeps the parent's high-water mark, which would count the parent's arrays."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(engine: str, mesh_path: str, count: int, out: str) -> dict:
    """Child process: build the engine, time one query, save the signed distances (negative inside)."""
    import trimesh

    mesh = trimesh.load(mesh_path, process=False)
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    points = make_points(mesh, count)
    build_start = time.perf_counter()
    if engine == "trimesh":
        query = lambda p: -trimesh.proximity.signed_distance(mesh, p)  # noqa: E731 (positive inside there)
    elif engine == "pcu":
        import point_cloud_utils as pcu

        f32 = f.astype(np.int32)
        query = lambda p: pcu.signed_distance_to_mesh(p, v, f32)[0]  # noqa: E731
    elif engine == "igl":
        import igl

        query = lambda p: igl.signed_distance(p, v, f, sign_type=igl.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER)[0]  # noqa: E731
    elif engine == "open3d":
        import open3d as o3d

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
        query = lambda p: scene.compute_signed_distance(o3d.core.Tensor(p.astype(np.float32))).numpy()  # noqa: E731
    elif engine == "fcpw+igl-fwn":
        query = _fcpw_igl_query(v, f)
    elif engine == "warp-bvh+igl-fwn":
        query = _warp_bvh_igl_query(v, f)
    elif engine.startswith("warp-"):
        query = _warp_winding_query(v, f, "cpu" if engine.startswith("warp-cpu") else "cuda:0")
    elif engine.startswith("kubik"):
        from kubik_core.recon3d.sdf import MeshSDF

        sdf = MeshSDF(v, f, device="cpu" if engine.startswith("kubik-cpu") else "cuda:0",
                      threads=1 if engine.endswith("-1thread") else None)
        truncation = float(engine.partition("-trunc")[2]) if "-trunc" in engine else None
        query = lambda p: sdf(p, truncation=truncation)  # noqa: E731
        query(points[:1000])  # compile / load kernels before the clock
    else:
        raise SystemExit(f"unknown engine {engine}")
    build = time.perf_counter() - build_start
    rss_before = _status_mb("VmRSS")
    start = time.perf_counter()
    distances = np.asarray(query(points), np.float64)
    seconds = time.perf_counter() - start
    np.save(out, distances)
    peak = _status_mb("VmHWM")
    return {"seconds": seconds, "build_seconds": build, "rss_before_mb": rss_before, "rss_peak_mb": peak}


def _warp_winding_query(v, f, device: str):
    """Warp's own combined query (BVH distance + winding-number sign), one launch (one core on CPU)."""
    import warp as wp

    wp.config.quiet = True

    @wp.kernel
    def signed(mesh: wp.uint64, points: wp.array(dtype=wp.vec3), out: wp.array(dtype=wp.float32)):
        tid = wp.tid()
        hit = wp.mesh_query_point_sign_winding_number(mesh, points[tid], 1.0e6, 2.0, 0.5)
        if hit.result:
            out[tid] = hit.sign * wp.length(wp.mesh_eval_position(mesh, hit.face, hit.u, hit.v) - points[tid])

    mesh = wp.Mesh(points=wp.array(v.astype(np.float32), dtype=wp.vec3, device=device),
                   indices=wp.array(f.astype(np.int32).ravel(), dtype=wp.int32, device=device),
                   support_winding_number=True)

    def query(p):
        pts = wp.array(p.astype(np.float32), dtype=wp.vec3, device=device)
        out = wp.empty(len(p), dtype=wp.float32, device=device)
        wp.launch(signed, dim=len(p), inputs=[mesh.id, pts, out], device=device)
        return out.numpy()

    query(np.zeros((4, 3)))
    return query


def _fcpw_igl_query(v, f):
    """fcpw's SIMD BVH closest-point query (float32; the distances come back as a list of
    Python objects) + libigl's fast winding number for the sign."""
    import fcpw
    import igl

    scene = fcpw.scene_3D()
    scene.set_object_count(1)
    scene.set_object_vertices(v.astype(np.float32), 0)
    scene.set_object_triangles(f.astype(np.int32), 0)
    scene.build(fcpw.aggregate_type.bvh_surface_area, True)

    def query(p):
        found = fcpw.interaction_3D_list()
        scene.find_closest_points(np.asfortranarray(p, np.float32), np.full(len(p), np.inf, np.float32), found)
        distance = np.array([hit.d for hit in found])
        distance[igl.fast_winding_number(v, f, np.ascontiguousarray(p, np.float64)) > 0.5] *= -1.0
        return distance

    query(np.zeros((4, 3)))
    return query


def _warp_bvh_igl_query(v, f):
    """Warp's BVH closest-point query on a thread pool (one launch per core) + libigl's fast
    winding number for the sign: kubik's CPU engine until sdf/cpu.py replaced it."""
    from concurrent.futures import ThreadPoolExecutor

    import igl
    import warp as wp

    wp.config.quiet = True

    @wp.kernel
    def unsigned(mesh: wp.uint64, points: wp.array(dtype=wp.vec3), out: wp.array(dtype=wp.float32)):
        tid = wp.tid()
        hit = wp.mesh_query_point_no_sign(mesh, points[tid], 1.0e6)
        if hit.result:
            out[tid] = wp.length(wp.mesh_eval_position(mesh, hit.face, hit.u, hit.v) - points[tid])

    mesh = wp.Mesh(points=wp.array(v.astype(np.float32), dtype=wp.vec3, device="cpu"),
                   indices=wp.array(f.astype(np.int32).ravel(), dtype=wp.int32, device="cpu"))
    threads = len(os.sched_getaffinity(0))

    def query(p):
        pts = wp.array(p.astype(np.float32), dtype=wp.vec3, device="cpu")
        out = wp.zeros(len(p), dtype=wp.float32, device="cpu")
        splits = np.linspace(0, len(p), threads + 1).astype(int)

        def run(bounds):
            lo, hi = bounds
            if hi > lo:
                wp.launch(unsigned, dim=hi - lo, inputs=[mesh.id, pts[lo:hi], out[lo:hi]], device="cpu")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, zip(splits[:-1], splits[1:])))
        distance = out.numpy().copy()
        distance[igl.fast_winding_number(v, f, np.ascontiguousarray(p, np.float64)) > 0.5] *= -1.0
        return distance

    query(np.zeros((4, 3)))
    return query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=400_000, help="points for the kubik CPU case")
    parser.add_argument("--gpu-points", type=int, default=2_000_000, help="points for the GPU cases")
    parser.add_argument("--engines", nargs="*", default=None, help="subset of engines to run")
    parser.add_argument("--json", default=None, help="also write all results here")
    parser.add_argument("--case", nargs=4, metavar=("ENGINE", "MESH", "N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        engine, mesh_path, count, out = args.case
        print(json.dumps(run_case(engine, mesh_path, int(count), out)))
        return

    import igl
    import trimesh

    from kubik_core.recon3d.sdf.cuda import cuda_device_count

    has_cuda = cuda_device_count() > 0
    device_name = _device_name(has_cuda)
    print(f"# sdf_engines: cpu={os.cpu_count()} cores, load average at start {os.getloadavg()}, {device_name}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        meshes = prepare_meshes(Path(tmp))
        for mesh_name, mesh_path in meshes.items():
            mesh = trimesh.load(mesh_path, process=False)
            v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
            cases = [(e, max(1000, int(args.points * share))) for e, share in CPU_ENGINES.items()]
            if has_cuda:
                cases += [(e, args.gpu_points) for e in GPU_ENGINES]
            if args.engines:
                cases = [c for c in cases if c[0] in args.engines]
            references: dict[int, np.ndarray] = {}
            exact_distances: dict[int, np.ndarray] = {}
            baseline, baseline_name = None, None
            for engine, count in cases:
                module = {"open3d": "open3d", "pcu": "point_cloud_utils", "fcpw+igl-fwn": "fcpw"}.get(
                    engine, "warp" if engine.startswith("warp") else None)
                if module and not _importable(module):
                    print(f"{engine:18s} {mesh_name:17s} skipped: {module} is not installed")
                    continue
                out = Path(tmp) / f"{engine}.npy"
                proc = subprocess.run([sys.executable, __file__, "--case", engine, str(mesh_path), str(count), str(out)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{engine:18s} {mesh_name:17s} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                measured = json.loads(proc.stdout.strip().splitlines()[-1])
                distances = np.load(out)
                if count not in references:
                    references[count] = igl.fast_winding_number(v, f, make_points(mesh, count)) > 0.5
                agreement = float(np.mean((distances < 0) == references[count]))
                # Exactness: |distance| against libigl's AABB closest point on 20k points spread over
                # both halves of the set (untruncated engines only; trimesh's distances are its own).
                spread = np.linspace(0, count - 1, min(count, 20_000)).astype(int)
                if count not in exact_distances:
                    exact_distances[count] = np.sqrt(igl.point_mesh_squared_distance(
                        make_points(mesh, count)[spread], v, f)[0])
                error = (float(np.abs(np.abs(distances[spread]) - exact_distances[count]).max())
                         if "trunc" not in engine and engine != "trimesh" else None)
                rate = count / measured["seconds"]
                if engine in ("pcu", "igl") and baseline is None:
                    baseline, baseline_name = rate, engine
                row = {"engine": engine, "mesh": mesh_name, "faces": int(len(f)), "points": count,
                       "device": "cuda" if "cuda" in engine else "cpu", "points_per_s": rate,
                       "baseline": baseline_name, "vs_baseline": rate / baseline if baseline else None, "sign_agreement": agreement,
                       "max_distance_error": error, **measured}
                results.append(row)
                ratio = f"{row['vs_baseline']:.2f}x {baseline_name}" if baseline else "n/a"
                print(f"{engine:18s} {mesh_name:17s} {row['device']:4s} {count:>9d} pts  {rate:>11,.0f} pts/s  "
                      f"{ratio:>12s}  sign {100 * agreement:7.3f}%  "
                      f"max |d| err {'n/a' if error is None else f'{error:.1e}':>7s}  peak RSS {measured['rss_peak_mb']:7.0f} MB "
                      f"(+{measured['rss_peak_mb'] - measured['rss_before_mb']:.0f} during query)  "
                      f"build {measured['build_seconds']:.2f} s", flush=True)
    print(f"# load average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "results": results}, indent=2))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _device_name(has_cuda: bool) -> str:
    if not has_cuda:
        return "no CUDA device"
    import torch

    return f"CUDA: {torch.cuda.get_device_name(0)}"


if __name__ == "__main__":
    main()
