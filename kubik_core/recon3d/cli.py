"""``kubik 3d preprocess|synth|eval|sdf``; the model commands are in :mod:`.model_cli`.

Every argument is checked before any work starts (:mod:`.cli_checks`): a bad value is one line
on stderr and exit status 2, never one failure per mesh or a traceback.

``--json`` outputs are stable interfaces:

- preprocess: the report, also saved as OUT/report.json:
  {"source", "meshes", "done", "skipped", "failed": [{"source", "error"}],
  "warnings": [{"source", "warning"}] (meshes done whose inside/outside labels may be wrong), "workers", "seconds"}
- synth:      {"meshes": folder, "count", "dataset": report as above, or null with --meshes-only}
- eval:       {"normalization", "points", "chamfer_l1", "chamfer_l2", "normal_consistency",
               "fscore@<t>" for each threshold, "volume_iou"}
- sdf:        {"points", "output", "device" (the one used), "inside", "min", "max", "seconds"}
"""
from __future__ import annotations

import json
import sys
import time

MAX_SAMPLES = 1 << 24   # per kind and mesh: 16.7 M points (a few hundred MB per mesh in memory)
MAX_VIEWS = 256
MAX_RESOLUTION = 4096
MAX_WORKERS = 256
MAX_PARTS = 32          # primitives per synthetic shape; each one adds a boolean union


def register(subparsers) -> None:
    parser = subparsers.add_parser("3d", help="3D training data: SDF samples, renders, metrics",
                                   description="Meshes to signed-distance samples and multi-view renders; "
                                               "mesh metrics; direct SDF queries.")
    sub = parser.add_subparsers(dest="recon3d_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("preprocess", help="a folder of meshes -> SDF samples + renders (resumable)")
    p.add_argument("src", help="mesh file or folder (searched recursively for .obj .ply .stl .off .glb .gltf)")
    p.add_argument("out", help="dataset folder (finished meshes in it are skipped)")
    _dataset_arguments(p)
    p.set_defaults(func=_preprocess)

    p = sub.add_parser("synth", help="a procedural training set (unions of random primitives)")
    p.add_argument("out", help="folder: OUT/meshes/*.ply and the dataset in OUT/dataset")
    p.add_argument("--n", type=int, required=True, help="number of shapes")
    p.add_argument("--seed", type=int, default=0, help="shape i depends only on (seed, i) (0)")
    p.add_argument("--max-parts", type=int, default=3, help="primitives per shape, at most (3)")
    p.add_argument("--meshes-only", action="store_true", help="write the meshes, skip preprocessing")
    _dataset_arguments(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser("eval", help="Chamfer, F-score, normal consistency, volume IoU of PRED vs GT")
    p.add_argument("pred", help="predicted mesh file")
    p.add_argument("gt", help="ground-truth mesh file")
    p.add_argument("--points", type=int, default=100_000, help="surface and volume samples (100000)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1],
                   help="F-score distances in the normalised frame (0.01 0.02 0.05 0.1)")
    p.add_argument("--normalize", choices=("each", "gt", "none"), default="each",
                   help="each: both boxes to [-1,1]; gt: both moved by GT's transform; none (each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_eval)

    p = sub.add_parser("sdf", help="signed distances of given points to a mesh (mesh units, negative inside)")
    p.add_argument("mesh", help="mesh file")
    p.add_argument("--points", required=True, help=".npy file with an [N, 3] float array")
    p.add_argument("-o", "--output", required=True, help=".npy file for the [N] float32 distances")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto = a GPU when there is one (auto)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.set_defaults(func=_sdf)

    from .model_cli import register_model_commands

    register_model_commands(sub)


def _dataset_arguments(p) -> None:
    p.add_argument("--workers", type=int, default=1, help="processes side by side (1)")
    p.add_argument("--surface", type=int, default=65536, help="surface points per mesh (65536)")
    p.add_argument("--near", type=int, default=65536, help="near-surface SDF samples per mesh (65536)")
    p.add_argument("--uniform", type=int, default=65536, help="uniform SDF samples per mesh (65536)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.005, 0.02, 0.05],
                   help="near-surface noise widths (0.005 0.02 0.05)")
    p.add_argument("--truncation", type=float, default=0.0, help="clip |SDF| to this (0 = exact)")
    p.add_argument("--occupancy", action="store_true", help="also store occupancy labels")
    p.add_argument("--views", type=int, default=12, help="renders per mesh, 0 for none (12)")
    p.add_argument("--ring", type=int, default=8, help="of which on a fixed ring (8)")
    p.add_argument("--resolution", type=int, default=256, help="render size in pixels (256)")
    p.add_argument("--device", default="auto", help="SDF distances on: cpu, cuda, cuda:N, auto = a GPU when there is one (auto)")
    p.add_argument("--seed-samples", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _config(args, out):
    """The preprocessing config, with every argument checked once here (not once per mesh):
    counts and noise widths, the output folder, the device, the render backend."""
    from ..cli import CommandError
    from . import cli_checks as check
    from .data.preprocess import PreprocessConfig
    from .data.render import MeshRenderer, RenderBackendError, RenderConfig
    from .data.samples import SampleConfig
    from .sdf import resolve_device

    for name in ("surface", "near", "uniform"):
        check.count(getattr(args, name), f"--{name}", high=MAX_SAMPLES)
    check.count(args.workers, "--workers", high=MAX_WORKERS)
    check.count(args.resolution, "--resolution", high=MAX_RESOLUTION)
    check.count(args.views, "--views", low=0, high=MAX_VIEWS)
    check.count(args.ring, "--ring", low=0, high=MAX_VIEWS)
    for sigma in args.sigmas:
        check.positive(sigma, "--sigmas")
    check.positive(args.truncation, "--truncation", zero=True)
    check.seed(args.seed_samples, "--seed-samples")
    check.output_folder(out, "out")
    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise CommandError(f"--device: {exc}") from None
    render = None
    if args.views:
        render = RenderConfig(views=args.views, ring=min(args.ring, args.views), resolution=args.resolution)
        try:  # fail here, once, rather than in every worker
            MeshRenderer(render).close()
        except RenderBackendError as exc:
            raise CommandError(f"{exc} (or pass --views 0 to skip renders)") from None
    samples = SampleConfig(surface=args.surface, near=args.near, uniform=args.uniform,
                           near_sigmas=tuple(args.sigmas), truncation=args.truncation,
                           occupancy=args.occupancy, seed=args.seed_samples)
    return PreprocessConfig(samples=samples, render=render, device=args.device)


def _run_dataset(src, out, args, config) -> dict:
    from tqdm import tqdm

    from ..cli import CommandError
    from .data.preprocess import preprocess_folder

    bar = tqdm(total=None, unit="mesh", disable=args.json or None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return preprocess_folder(src, out, config, workers=args.workers, progress=progress)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the output folder failed between the check and the writes
        raise CommandError(f"cannot write the dataset in {out}: {exc.strerror or exc}") from None
    finally:
        bar.close()


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['done']} meshes done, {report['skipped']} already done, {len(report['failed'])} failed "
          f"of {report['meshes']} in {report['seconds']:.1f} s")
    for failure in report["failed"]:
        print(f"  failed: {failure['source']}: {failure['error']}")
    for flagged in report["warnings"]:
        print(f"  warning: {flagged['source']}: {flagged['warning']}")


def _preprocess(args) -> int:
    report = _run_dataset(args.src, args.out, args, _config(args, args.out))
    _print_report(report, args.json)
    return 0 if report["done"] + report["skipped"] > 0 or not report["meshes"] else 1


def _synth(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from . import cli_checks as check
    from .data.synth import write_synthetic_meshes

    check.count(args.n, "--n")
    check.count(args.max_parts, "--max-parts", high=MAX_PARTS)
    check.seed(args.seed)
    meshes = Path(args.out) / "meshes"
    check.output_folder(meshes, "out")
    dataset = Path(args.out) / "dataset"
    config = None if args.meshes_only else _config(args, dataset)  # checked before any mesh is made
    with tqdm(total=args.n, unit="shape", disable=args.json or None, file=sys.stderr) as bar:
        write_synthetic_meshes(meshes, args.n, seed=args.seed, max_parts=args.max_parts,
                               progress=lambda done, total: bar.update(done - bar.n))
    report = None if config is None else _run_dataset(meshes, dataset, args, config)
    if args.json:
        print(json.dumps({"meshes": str(meshes), "count": args.n, "dataset": report}, indent=2))
    else:
        print(f"{args.n} shapes in {meshes}")
        if report is not None:
            _print_report(report, False)
    return 0


def _eval(args) -> int:
    from ..cli import CommandError
    from . import cli_checks as check
    from .errors import MeshError
    from .mesh.io import load_mesh
    from .mesh.metrics import mesh_metrics

    check.count(args.points, "--points", high=MAX_SAMPLES)
    check.seed(args.seed)
    for threshold in args.thresholds:
        check.positive(threshold, "--thresholds")
    try:
        pred, gt = load_mesh(args.pred), load_mesh(args.gt)
    except MeshError as exc:
        raise CommandError(str(exc)) from None
    result = mesh_metrics(pred, gt, points=args.points, thresholds=args.thresholds,
                          normalize=args.normalize, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


def _sdf(args) -> int:
    import io

    import numpy as np

    from ..cli import CommandError
    from . import cli_checks as check
    from .errors import MeshError
    from .mesh.io import load_mesh
    from .sdf import MeshSDF, resolve_device
    from .storage import write_bytes_atomic

    check.output_file(args.output, "-o")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CommandError(f"--device: {exc}") from None
    try:
        points = np.load(args.points, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CommandError(f"--points {args.points}: cannot be read as a .npy array ({exc})") from None
    if not isinstance(points, np.ndarray):  # an .npz archive
        raise CommandError(f"--points {args.points}: expected one .npy array, got an .npz archive")
    real = np.issubdtype(points.dtype, np.integer) or np.issubdtype(points.dtype, np.floating)
    if points.ndim != 2 or points.shape[1] != 3 or not real:
        raise CommandError(f"--points {args.points}: expected a numeric [N, 3] array, got {points.dtype} {points.shape}")
    if not np.isfinite(points).all():
        raise CommandError(f"--points {args.points}: {int((~np.isfinite(points)).any(1).sum())} points are NaN or infinite")
    started = time.perf_counter()
    try:
        mesh = load_mesh(args.mesh)
        distances = MeshSDF(mesh.vertices, mesh.faces, device=device)(points)
    except (MeshError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    buffer = io.BytesIO()
    np.save(buffer, distances)
    try:
        write_bytes_atomic(args.output, buffer.getvalue())
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    summary = {"points": int(len(points)), "output": args.output, "device": device,
               "inside": int((distances < 0).sum()),
               "min": float(distances.min()) if len(distances) else None,
               "max": float(distances.max()) if len(distances) else None,
               "seconds": round(time.perf_counter() - started, 3)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['points']} distances -> {args.output} ({summary['inside']} inside)")
    return 0
