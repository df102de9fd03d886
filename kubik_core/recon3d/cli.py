"""``kubik 3d``: every command of the image-to-3D capability.

* data:  ``preprocess`` (meshes -> SDF samples + renders), ``synth`` (procedural shapes), ``eval``
  (mesh metrics), ``sdf`` (signed distances of given points), ``warmup`` (compile the SDF
  engine ahead of its first use);
* model: ``train-vae``, ``encode``, ``train-flow``, ``export``, ``reconstruct`` (one picture -> a
  mesh file). The training commands run on one CPU, one GPU, or many GPUs under torchrun
  (``torchrun --nproc_per_node 8 -m kubik_core 3d train-flow ...``).

Every argument is checked before any work starts (:mod:`.cli_checks`): a bad value is one line
on stderr and exit status 2, never one failure per mesh, a traceback or an hour of training lost.

``--json`` outputs are stable interfaces:

- preprocess: the report, also saved as OUT/report.json:
  {"source", "meshes", "done", "skipped", "failed": [{"source", "error"}],
  "warnings": [{"source", "warning"}] (meshes done whose inside/outside labels may be wrong), "workers"
  (processes, or the Ray cluster's CPUs), "seconds", and with --shards "shards": {"folder", "shards", "samples",
  "written"}}
- synth:      {"meshes": folder, "count", "dataset": report as above, or null with --meshes-only}
- eval:       {"normalization", "points", "chamfer_l1", "chamfer_l2", "normal_consistency",
               "fscore@<t>" for each threshold, "volume_iou"}
- sdf:        {"points", "output", "device" (the one used), "inside", "min", "max", "seconds"}
- warmup:     {"device", "ready", "compiled", "from_cache", "seconds"}
- train-vae / train-flow: {"trainer", "config", "datasets", "train_shapes", "val_shapes", "steps",
  "model", "seconds", "held_out": {"volume_iou", "chamfer_l1", "chamfer_l2", "normal_consistency",
  "fscore@<t>", "shapes", "empty"}, ...}
- encode: {"output", "shapes", "views", "tokens", "channels", "seconds"}
- reconstruct: {"image", "output", "model", "seed", "resolution", "vertices", "faces", "sdf_queries",
  "sample_seconds", "seconds"}
"""
from __future__ import annotations

import json
import os
import sys
import time

MAX_SAMPLES = 1 << 24   # per kind and mesh: 16.7 M points (a few hundred MB per mesh in memory)
MAX_VIEWS = 256
MAX_RENDER_RESOLUTION = 4096
MAX_GRID_RESOLUTION = 2048   # marching-cubes grid cells per side (extract refuses what memory cannot hold)
MAX_WORKERS = 256
MAX_PARTS = 32          # primitives per synthetic shape; each one adds a boolean union


def register(subparsers) -> None:
    parser = subparsers.add_parser("3d", help="image to 3D: reconstruct meshes, train the model, build its data",
                                   description="One picture -> a 3D mesh with the SDF-VAE + flow model; training "
                                               "that model; meshes to signed-distance samples and multi-view "
                                               "renders; mesh metrics; direct SDF queries.")
    sub = parser.add_subparsers(dest="recon3d_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("preprocess", help="a folder of meshes -> SDF samples + renders (resumable)")
    p.add_argument("src", help="mesh file, folder (searched recursively for .obj .ply .stl .off .glb .gltf), or a "
                               ".txt/.lst manifest: one mesh path per line, inside the manifest's folder (read as it goes)")
    p.add_argument("out", help="dataset folder (finished meshes in it are skipped)")
    _dataset_arguments(p)
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the meshes as Ray tasks: alone, on a local Ray cluster started for the run; with "
                        "HOST:PORT, ray://HOST:PORT or auto, on that cluster (a node that cannot see the meshes or OUT "
                        "gets each mesh from this driver and sends its files back). Needs pip install "
                        "\"kubikai[ray]\". Put it after SRC OUT or "
                        "write --ray=ADDRESS")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray cluster (this machine's)")
    p.add_argument("--ray-retries", type=int, default=3,
                   help="re-runs of a mesh whose Ray worker or node was lost (3); a mesh's own errors are not retried")
    p.add_argument("--shards", default=None, metavar="DIR",
                   help="also pack the dataset into WebDataset-style tar shards in DIR (training reads either)")
    p.add_argument("--shard-size", type=int, default=1000, help="meshes per shard (1000)")
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

    p = sub.add_parser("warmup", help="compile the SDF engine's kernels now (cached on disk), so a first query does not stall")
    p.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N / auto to compile the GPU kernel too (cpu)")
    p.add_argument("--json", action="store_true", help="print what was compiled as JSON")
    p.set_defaults(func=_warmup)

    _register_model_commands(sub)


# ---------------------------------------------------------------- the data commands
def _warmup(args) -> int:
    from ..common.commands import CommandError
    from .sdf import warm_up

    try:
        report = warm_up(args.device)
    except ValueError as exc:   # a device this machine cannot run
        raise CommandError(f"--device: {exc}") from None
    if args.json:
        print(json.dumps(report))
    else:
        print(f"SDF engine ready on {report['device']}: {report['ready']} kernels, {report['compiled']} compiled now, "
              f"{report['from_cache']} loaded from cache, {report['seconds']} s")
    return 0


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
    from ..common.commands import CommandError
    from . import cli_checks as check
    from .data.preprocess import PreprocessConfig
    from .data.render import MeshRenderer, RenderBackendError, RenderConfig
    from .data.samples import SampleConfig
    from .sdf import resolve_device

    for name in ("surface", "near", "uniform"):
        check.count(getattr(args, name), f"--{name}", high=MAX_SAMPLES)
    check.count(args.workers, "--workers", high=MAX_WORKERS)
    check.count(args.resolution, "--resolution", high=MAX_RENDER_RESOLUTION)
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

    from ..common.commands import CommandError
    from .data.preprocess import preprocess_folder

    bar = tqdm(total=None, unit="mesh", disable=args.json or None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    shards = dict(shards=getattr(args, "shards", None), shard_size=getattr(args, "shard_size", 1000))
    try:
        if getattr(args, "ray", None) is not None:
            from .data.ray_preprocess import preprocess_on_ray

            return preprocess_on_ray(src, out, config, address=args.ray or None, num_cpus=args.ray_cpus,
                                     max_retries=args.ray_retries, progress=progress, **shards)
        return preprocess_folder(src, out, config, workers=args.workers, progress=progress, **shards)
    except (FileNotFoundError, ConnectionError) as exc:
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
    if report.get("shards"):
        shards = report["shards"]
        print(f"{shards['samples']} samples in {shards['shards']} shards in {shards['folder']} "
              f"({shards['written']} written now)")


def _preprocess(args) -> int:
    from ..common.commands import CommandError
    from . import cli_checks as check
    from .data.ray_preprocess import check_address, import_ray

    check.count(args.shard_size, "--shard-size")
    check.count(args.ray_retries, "--ray-retries", low=0, high=100)
    if args.shards is not None:
        check.output_folder(args.shards, "--shards")
    if args.ray is None and (args.ray_cpus is not None or args.ray_retries != 3):
        raise CommandError("--ray-cpus and --ray-retries apply to a Ray run; add --ray (or drop them)")
    if args.ray is not None:
        if args.device not in ("auto", "cpu"):
            raise CommandError(f"--device {args.device}: with --ray each mesh runs on one CPU and no GPU; pass "
                               "--device cpu (or leave --ray out to use the GPU here)")
        if args.workers != 1:
            raise CommandError("--workers is for the local run; with --ray the cluster's CPUs set how many meshes "
                               "run at once (--ray-cpus for a local cluster)")
        if args.ray_cpus is not None:
            if args.ray:
                raise CommandError("--ray-cpus sizes a local cluster; a cluster at an address has its own CPUs")
            check.count(args.ray_cpus, "--ray-cpus", high=MAX_WORKERS)
        try:
            if args.ray:
                check_address(args.ray)
            import_ray()
        except (ValueError, ConnectionError, ImportError) as exc:
            raise CommandError(str(exc)) from None
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
    from ..common.commands import CommandError
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

    from ..common.commands import CommandError
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


# ---------------------------------------------------------------- the model's commands
def _register_model_commands(sub) -> None:
    p = sub.add_parser("train-vae", help="train the shape VAE on datasets made by preprocess/synth")
    p.add_argument("datasets", nargs="+", help="dataset folders (with manifest.json)")
    p.add_argument("-o", "--out", required=True, help="run folder: OUT/vae.safetensors, metrics, loss.png")
    _training_arguments(p)
    p.set_defaults(func=_train_vae)

    p = sub.add_parser("encode", help="encode every shape of datasets with a trained VAE (input of train-flow)")
    p.add_argument("datasets", nargs="+", help="dataset folders")
    p.add_argument("--vae", required=True, help="VAE model file (.safetensors from train-vae)")
    p.add_argument("-o", "--output", required=True, help="latents file (.safetensors)")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto (auto)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.set_defaults(func=_encode)

    p = sub.add_parser("train-flow", help="train the image-conditioned flow model on encoded latents")
    p.add_argument("latents", help="latents file from `kubik 3d encode` (it names its datasets and VAE)")
    p.add_argument("-o", "--out", required=True, help="run folder: OUT/model.safetensors (VAE + flow + image encoder)")
    p.add_argument("--image-encoder-weights", help="local safetensors file with pretrained weights for the "
                                                   "config's timm backbone (none: trained from scratch)")
    _training_arguments(p)
    p.set_defaults(func=_train_flow)

    p = sub.add_parser("export", help="copy a model file, optionally in half precision (half the size)")
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("-o", "--output", required=True, help="new model file (.safetensors; its .json is written beside it)")
    p.add_argument("--half", action="store_true", help="store weights as float16 (they load as float32)")
    p.set_defaults(func=_export)

    p = sub.add_parser("reconstruct", help="one image -> a mesh file (GLB/OBJ/PLY)")
    p.add_argument("image", help="image file; transparent background or a plain one")
    p.add_argument("-o", "--output", required=True, help="mesh file: .glb, .obj or .ply")
    p.add_argument("--model", help="model file (default: the shipped tiny demo model)")
    p.add_argument("--steps", type=int, help="sampling steps (model default)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (model default)")
    p.add_argument("--sampler", choices=("euler", "heun"), help="ODE solver (model default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=128, help="marching-cubes grid (128)")
    p.add_argument("--dense", action="store_true", help="query every grid point instead of refining near the surface")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto (auto)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.set_defaults(func=_reconstruct)


def _training_arguments(p) -> None:
    p.add_argument("--config", default="tiny", help="config name (tiny, base) or JSON path (tiny)")
    p.add_argument("--steps", type=int, help="override the config's step count")
    p.add_argument("--batch-size", type=int, help="override the config's global batch size")
    p.add_argument("--lr", type=float, help="override the config's learning rate")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                   help="override any config value, e.g. --set vae.width=256 (repeatable)")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto; under torchrun each rank takes its GPU (auto)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto = bf16 autocast on CUDA, fp32 on the CPU")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--val-every", type=int, default=500, help="held-out metrics every N steps (500)")
    p.add_argument("--val-shapes", type=int, default=8, help="held-out shapes per validation (8)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint every N steps (500)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes as if the last step were "
                   "reached (held-out metrics, checkpoint, model file); the schedule still follows --steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _overrides(args, section: str) -> dict:
    from ..common.commands import CommandError
    from ..common.bounded_json import BoundedJSONError
    from ..common.bounded_json import loads as bounded_loads

    overrides: dict[str, dict] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        part, dot, name = key.partition(".")
        if not (sep and dot and name):
            raise CommandError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. vae.width=256")
        try:
            overrides.setdefault(part, {})[name] = bounded_loads(value, max_depth=8, max_bytes=64 * 1024)
        except BoundedJSONError:  # not JSON: the text itself (the schema then says what it must be)
            overrides.setdefault(part, {})[name] = value
    for flag, key in (("steps", "steps"), ("batch_size", "batch_size"), ("lr", "lr")):
        if getattr(args, flag) is not None:
            overrides.setdefault(section, {})[key] = getattr(args, flag)
    return overrides


def _common_training(args, section: str) -> dict:
    """The arguments every trainer takes, checked before any data is read."""
    from . import cli_checks as check

    if args.steps is not None:
        check.count(args.steps, "--steps", high=1_000_000_000)
    if args.batch_size is not None:
        check.count(args.batch_size, "--batch-size", high=65536)
    if args.lr is not None:
        check.positive(args.lr, "--lr")
    if args.minutes is not None:
        check.positive(args.minutes, "--minutes")
    check.count(args.val_every, "--val-every")
    check.count(args.val_shapes, "--val-shapes")
    check.count(args.checkpoint_every, "--checkpoint-every")
    check.seed(args.seed)
    check.output_folder(args.out, "-o")
    check.torch_device(args.device)
    return {"config": args.config, "overrides": _overrides(args, section), "device": args.device,
            "resume": args.resume, "seed": args.seed, "val_every": args.val_every, "val_shapes": args.val_shapes,
            "checkpoint_every": args.checkpoint_every, "precision": args.precision,
            "gradient_checkpointing": args.gradient_checkpointing, "show_progress": not args.json,
            "minutes": args.minutes}


def _print(summary: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(lines))


def _held_out_line(summary: dict) -> str:
    held = summary.get("held_out")
    if not held:
        return "no held-out shapes: add shapes for validation metrics"
    return (f"held-out ({held['shapes']} shapes): volume IoU {held.get('volume_iou', 0):.3f}, "
            f"Chamfer-L1 {held.get('chamfer_l1', float('nan')):.4f}, F@0.05 {held.get('fscore@0.05', float('nan')):.3f}")


def _run_training(fn, args, section: str, **extra) -> int:
    from ..common.commands import CommandError

    common = _common_training(args, section)
    try:
        summary = fn(**extra, **common)
    except (FileExistsError, FileNotFoundError, ValueError, FloatingPointError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the run folder failed between the check and the writes (disk full ...)
        raise CommandError(f"cannot write the run in {args.out}: {exc.strerror or exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        _print(summary, args.json, [f"{summary['trainer']}: {summary['steps']} steps in {summary['seconds']} s "
                                    f"-> {summary['model']}", _held_out_line(summary)])
    return 0


def _train_vae(args) -> int:
    from .train.vae import train_vae

    return _run_training(train_vae, args, "train_vae", datasets=args.datasets, out=args.out)


def _train_flow(args) -> int:
    from pathlib import Path

    from ..common.commands import CommandError
    from .train.flow import train_flow

    weights = args.image_encoder_weights
    if weights is not None and (not Path(weights).is_file() or Path(weights).suffix != ".safetensors"):
        raise CommandError(f"--image-encoder-weights {weights}: give an existing .safetensors file (timm or "
                           "Hugging Face model.safetensors of the config's backbone)")

    return _run_training(train_flow, args, "train_flow", latents=args.latents, out=args.out,
                         image_encoder_weights=args.image_encoder_weights)


def _encode(args) -> int:
    from ..common.commands import CommandError
    from . import cli_checks as check
    from .train.encode import encode_datasets

    _model_file_output(args.output)
    device = check.torch_device(args.device)
    try:
        summary = encode_datasets(args.datasets, args.vae, args.output, device=device, show_progress=not args.json)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    _print(summary, args.json, [f"encoded {summary['shapes']} shapes x {summary['views']} views -> {summary['output']}"])
    return 0


def _export(args) -> int:
    import torch

    from ..common.commands import CommandError
    from .models.shape_model import load_model, save_model

    _model_file_output(args.output)
    try:
        model = load_model(args.model)
        path = save_model(model, args.output, model.info, dtype=torch.float16 if args.half else torch.float32)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {model.kind})")
    return 0


def _model_file_output(path) -> None:
    """-o of encode and export: a .safetensors file that can be written (checked before the work)."""
    from pathlib import Path

    from ..common.commands import CommandError
    from . import cli_checks as check

    if Path(path).suffix != ".safetensors":
        raise CommandError(f"-o {path}: the output must end in .safetensors")
    check.output_file(path, "-o")


def _reconstruct(args) -> int:
    from pathlib import Path

    from ..common.commands import CommandError
    from . import cli_checks as check
    from .demo import demo_model_path
    from .mesh.export import MESH_FORMATS
    from .pipeline import load_model, reconstruct

    if args.steps is not None:
        check.count(args.steps, "--steps", high=1000)
    if args.cfg is not None:
        check.positive(args.cfg, "--cfg", zero=True)
    check.count(args.resolution, "--resolution", low=2, high=MAX_GRID_RESOLUTION)
    check.seed(args.seed)
    if Path(args.output).suffix.lower().lstrip(".") not in MESH_FORMATS:
        raise CommandError(f"-o {args.output}: give the mesh file a suffix: "
                           f"{', '.join('.' + f for f in MESH_FORMATS)}")
    check.output_file(args.output, "-o")
    device = check.torch_device(args.device)
    try:
        model = load_model(args.model or demo_model_path(), device, kind="image-to-shape")
        summary = reconstruct(args.image, args.output, model=model, seed=args.seed, steps=args.steps,
                              cfg=args.cfg, sampler=args.sampler, resolution=args.resolution,
                              hierarchical=not args.dense)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    _print(summary, args.json, [f"{summary['output']}: {summary['vertices']} vertices, {summary['faces']} faces "
                                f"in {summary['seconds']} s"])
    return 0
