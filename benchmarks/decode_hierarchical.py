"""Dense vs hierarchical SDF grid decode (kubik_core.recon3d.mesh.extract), side by side in one run.

For each resolution, the same SDF is meshed twice with ``extract_mesh``: densely (every one of
the (R+1)^3 grid points queried: the baseline) and hierarchically (coarse grid, then only cells
near the surface refined). Each decode runs in its own process, so that its peak memory is its
own: the growth of the process's peak RSS during the decode (``/proc/self/clear_refs`` resets it
just before), and on CUDA torch's peak allocation. The two meshes are then compared with
kubik_core.recon3d.mesh.metrics (100k surface samples each, same frame): Chamfer-L1 and F-score@0.01,
next to the Chamfer of the dense mesh with a second sampling of itself (the floor 100k samples
resolve), and by the vertex Hausdorff distance (0 when both decodes agree around the surface).

SDF sources:

* ``--sdf bunny`` (default): the exact signed distance (``MeshSDF``) of pymeshfix's holed Stanford
  bunny (~100k faces), normalised into [-0.95, 0.95]^3;
* ``--model PATH``: a kubik3d model file; a procedural shape (``synth.random_shape``, ``--seed``)
  is encoded with the model's VAE and its decoded SDF is meshed - a learned SDF, as in
  ``kubik 3d reconstruct``.

One line per resolution and band: source, device, queries / seconds / peak memory of the dense decode
(the baseline) and of the hierarchical one, their ratios, and the Chamfer between the meshes.

    python benchmarks/decode_hierarchical.py [--sdf bunny | --model PATH] [--resolutions 128 256]
                                             [--device cpu|cuda] [--bands 1 2] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_sdf(source: dict, device: str):
    """The SDF callable (torch points -> torch distances) of a source description."""
    import torch

    if source["kind"] == "bunny":
        import pymeshfix

        from kubik_core.recon3d.mesh.io import load_mesh, normalize
        from kubik_core.recon3d.sdf import MeshSDF

        mesh, _ = normalize(load_mesh(Path(pymeshfix.__file__).parent / "examples" / "StanfordBunny.ply"))
        sdf = MeshSDF(mesh.vertices, mesh.faces, device=device)
        return lambda points: torch.from_numpy(sdf(points.cpu().numpy())).to(points.device)

    from kubik_core.recon3d.data.synth import random_shape
    from kubik_core.recon3d.mesh.io import normalize
    from kubik_core.recon3d.pipeline import load_model, mesh_to_latent, sdf_function

    model = load_model(source["path"], device=device)
    mesh, _ = normalize(random_shape(np.random.default_rng(source["seed"])))
    return sdf_function(mesh_to_latent(model, mesh.vertices, mesh.faces, seed=source["seed"]))


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(spec: dict) -> None:
    """One decode in this process; prints a JSON summary and writes the mesh to spec['mesh']."""
    import torch

    from kubik_core.recon3d.mesh.extract import estimate_decode_bytes, extract_mesh

    sdf_fn = build_sdf(spec["source"], spec["device"])
    cuda = spec["device"].startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    Path("/proc/self/clear_refs").write_text("5")   # reset VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    mesh = extract_mesh(sdf_fn, spec["resolution"], hierarchical=spec["hierarchical"], device=spec["device"],
                        band=spec["band"], keep_largest=False)
    if cuda:
        torch.cuda.synchronize()
    np.savez(spec["mesh"], vertices=mesh.vertices, faces=mesh.faces)
    print(json.dumps({
        "queries": mesh.queries, "seconds": mesh.seconds, "faces": int(len(mesh.faces)),
        "peak_rss_growth_mb": (_rss_kib("VmHWM") - before) / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None,
        "estimate_mb": estimate_decode_bytes(spec["resolution"], spec["hierarchical"], device=spec["device"]) / 2 ** 20,
    }))


def decode_in_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"decode {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(mesh_a: str, mesh_b: str) -> dict:
    """Chamfer-L1 and F-score of two meshes, the Chamfer of ``mesh_b`` with itself (sampled with
    another seed: the floor that 100k samples can resolve), and the vertex Hausdorff distance
    (0 when marching cubes saw the same grid values around the surface)."""
    import trimesh
    from scipy.spatial import cKDTree

    from kubik_core.recon3d.mesh.metrics import mesh_metrics

    a, b = (np.load(p) for p in (mesh_a, mesh_b))
    mesh_a, mesh_b = (trimesh.Trimesh(m["vertices"], m["faces"], process=False) for m in (a, b))
    metrics = mesh_metrics(mesh_a, mesh_b, points=100_000, normalize="none", thresholds=(0.01,))
    floor = mesh_metrics(mesh_b, mesh_b, points=100_000, normalize="none", thresholds=(0.01,), seed=1)
    hausdorff = max(cKDTree(b["vertices"]).query(a["vertices"])[0].max(),
                    cKDTree(a["vertices"]).query(b["vertices"])[0].max())
    return {"chamfer_l1": metrics["chamfer_l1"], "fscore@0.01": metrics["fscore@0.01"],
            "chamfer_l1_floor": floor["chamfer_l1"], "vertex_hausdorff": float(hausdorff)}


def memory(case: dict) -> str:
    text = f"+{case['peak_rss_growth_mb']:.0f} MB RSS"
    if case["peak_cuda_mb"] is not None:
        text += f", {case['peak_cuda_mb']:.0f} MB CUDA"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sdf", choices=["bunny"], default="bunny", help="mesh whose exact SDF is decoded")
    source.add_argument("--model", type=Path, help="a kubik3d model file: decode a VAE-encoded procedural shape")
    parser.add_argument("--seed", type=int, default=0, help="procedural shape for --model")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bands", type=float, nargs="+", default=None, help="near-surface bands to measure, "
                        "in cell diagonals (default: extract.DEFAULT_BAND)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return

    from kubik_core.recon3d.mesh.extract import DEFAULT_BAND

    bands = args.bands or [DEFAULT_BAND]
    if args.model:
        source = {"kind": "model", "path": str(args.model.resolve()), "seed": args.seed,
                  "name": f"{args.model.stem} (seed {args.seed})"}
    else:
        source = {"kind": "bunny", "name": "bunny"}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in args.resolutions:
            spec = {"source": source, "device": args.device, "resolution": resolution,
                    "hierarchical": False, "band": bands[0], "mesh": f"{tmp}/dense_{resolution}.npz"}
            dense = decode_in_child(spec)
            for band in bands:
                spec.update(hierarchical=True, band=band, mesh=f"{tmp}/hierarchical_{resolution}_{band}.npz")
                hier = decode_in_child(spec)
                agreement = compare(spec["mesh"], f"{tmp}/dense_{resolution}.npz")
                results.append({"source": source["name"], "device": args.device, "resolution": resolution,
                                "band": band, "dense": dense, "hierarchical": hier, **agreement})
                print(f"decode {source['name']} {resolution}^3 on {args.device}, band {band:g}: "
                      f"queries dense {dense['queries']:,} (baseline) vs hierarchical {hier['queries']:,} = "
                      f"{dense['queries'] / hier['queries']:.1f}x fewer; "
                      f"time {dense['seconds']:.1f} s vs {hier['seconds']:.1f} s = "
                      f"{dense['seconds'] / hier['seconds']:.1f}x; "
                      f"peak {memory(dense)} vs {memory(hier)} (estimates {dense['estimate_mb']:.0f} / "
                      f"{hier['estimate_mb']:.0f} MB); faces {dense['faces']:,} vs {hier['faces']:,}; "
                      f"Chamfer-L1 {agreement['chamfer_l1']:.2e} (sampling floor {agreement['chamfer_l1_floor']:.2e}), "
                      f"F@0.01 {agreement['fscore@0.01']:.4f}, vertex Hausdorff {agreement['vertex_hausdorff']:.2e}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
