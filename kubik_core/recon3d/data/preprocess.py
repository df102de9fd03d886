"""``kubik 3d preprocess``: a folder of meshes -> a training set of SDF samples and renders.

Output layout (``OUT``)::

    OUT/manifest.json          every finished mesh: id, source, files (rebuilt after each run)
    OUT/report.json            the last run: counts, one entry per failed mesh with its error, and
                               one per mesh done with a warning (faces that no orientation makes
                               consistent: its inside/outside labels may be wrong)
    OUT/<id>/samples.npz       SDF samples, layout in :mod:`.samples`
    OUT/<id>/views.npz         depth [V,H,W] float32 and normal [V,H,W,3] float16 (when rendered)
    OUT/<id>/view_000.png ...  RGBA renders, alpha 0 on background
    OUT/<id>/meta.json         normalisation, mesh statistics, sampling and camera settings,
                               cameras (convention in :mod:`.render`)

``<id>`` is the mesh's path relative to SRC with separators turned into ``__`` and the suffix
dropped. ``meta.json`` is written last: a mesh whose ``meta.json`` exists is finished, and a
later run skips it, so an interrupted run resumes where it stopped. A mesh that fails is listed
in the report and never stops the run.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np

from ...common.bounded_json import loads as bounded_loads
from ..errors import MeshError
from ..mesh.io import MESH_SUFFIXES, clean_mesh, load_mesh, normalize
from ..storage import save_json_atomic, save_npz_atomic, save_png_atomic
from .render import RenderConfig
from .samples import SampleConfig, sample_shape

FORMAT_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    samples: SampleConfig = field(default_factory=SampleConfig)
    render: RenderConfig | None = field(default_factory=RenderConfig)  # None: no renders
    margin: float = 0.95           # the longest bounding-box side becomes 2 * margin
    device: str = "auto"           # where distances are computed: "cpu", "cuda[:N]", "auto" (GPU if any)


def find_meshes(src) -> list[Path]:
    """Mesh files under ``src`` (or ``src`` itself), sorted so ids and order are stable."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such file or folder")
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def mesh_id(root: Path, path: Path) -> str:
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    return "__".join(relative.with_suffix("").parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocess_mesh(path, out_dir, config: PreprocessConfig, renderer=None, *, threads: int | None = None) -> dict:
    """Turn one mesh file into ``out_dir/{samples.npz, views.npz, view_*.png, meta.json}``."""
    from ..sdf import MeshSDF

    path, out_dir = Path(path), Path(out_dir)
    started = time.perf_counter()
    textured = load_mesh(path, keep_visuals=renderer is not None)
    orientation = textured.metadata["orientation"]  # what the orientation repair did on load
    plain = clean_mesh(textured)
    plain, normalization = normalize(plain, margin=config.margin)
    sdf = MeshSDF(plain.vertices, plain.faces, device=config.device, threads=threads)
    samples = sample_shape(plain, normalization, config.samples, sdf)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples.save(out_dir / "samples.npz")

    meta = {
        "format_version": FORMAT_VERSION,
        "source": str(path),
        "source_sha256": _sha256(path),
        "normalization": normalization.as_dict(),
        "mesh": {"vertices": int(len(plain.vertices)), "faces": int(len(plain.faces)),
                 "watertight": bool(plain.is_watertight), "orientation": orientation,
                 "bounds": np.asarray(plain.bounds).tolist()},
        "samples": {"file": "samples.npz", "config": config.samples.as_dict(),
                    "counts": {k: int(v.shape[0]) for k, v in samples.arrays.items() if v.ndim and k.endswith("points")}},
        "views": None,
    }
    if renderer is not None:
        views, cameras = renderer.render(normalization.apply(textured))
        files = []
        for i, view in enumerate(views):
            name = f"view_{i:03d}.png"
            save_png_atomic(out_dir / name, view["rgba"])
            files.append(name)
        extra = {}
        if "depth" in views[0]:
            extra["depth"] = np.stack([v["depth"] for v in views])
        if "normal" in views[0]:
            extra["normal"] = np.stack([v["normal"] for v in views]).astype(np.float16)
        if extra:
            save_npz_atomic(out_dir / "views.npz", extra)
        meta["views"] = {"rgba": files, "maps": "views.npz" if extra else None,
                         "config": renderer.config.as_dict(), **cameras}
    meta["seconds"] = round(time.perf_counter() - started, 3)
    save_json_atomic(out_dir / "meta.json", meta)  # last: marks the mesh as finished
    return meta


def _finished_meta(out_dir: Path) -> dict | None:
    """The meta.json of a finished mesh folder, or None (absent, damaged, hostile, other format)."""
    try:
        meta = bounded_loads((out_dir / "meta.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        return None
    return meta


def is_finished(out_dir: Path) -> bool:
    return _finished_meta(out_dir) is not None


# One renderer per worker process, created by the pool initializer and reused for every mesh.
_WORKER: dict = {}


def _init_worker(render_config: RenderConfig | None, threads: int) -> None:
    _WORKER["threads"] = threads
    _WORKER["renderer"] = None
    if render_config is not None:
        from .render import MeshRenderer

        _WORKER["renderer"] = MeshRenderer(render_config)


def _work(path: str, out_dir: str, config: PreprocessConfig) -> dict:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # hostile numbers end in a recorded error, not noise
            meta = preprocess_mesh(path, out_dir, config, _WORKER.get("renderer"), threads=_WORKER.get("threads"))
        result = {"source": path, "ok": True, "seconds": meta["seconds"]}
        orientation = meta["mesh"]["orientation"]
        if not orientation["consistent"]:
            result["warning"] = (f"{orientation['non_orientable_parts']} part(s) of the mesh cannot be oriented "
                                 "consistently (a Moebius-like surface): its inside/outside labels may be wrong")
        return result
    except MeshError as exc:
        return {"source": path, "ok": False, "error": str(exc).removeprefix(f"{path}: ")}
    except Exception as exc:  # a bad mesh must never stop the run: record what happened
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if len(message) > 300:  # e.g. GL errors that quote a whole shader
            message = message[:300] + "..."
        return {"source": path, "ok": False, "error": f"{type(exc).__name__}: {message}"}


def preprocess_folder(src, out, config: PreprocessConfig, *, workers: int = 1,
                      progress: Callable[[int, int], None] | None = None) -> dict:
    """Preprocess every mesh under ``src`` into ``out``; returns the report (also in report.json).

    Finished meshes are skipped. ``workers`` processes run side by side, each with its own
    renderer; a worker that crashes (a segfault in a GL driver, say) costs only the mesh it had:
    the remaining meshes go to a fresh pool.
    """
    src, out = Path(src), Path(out)
    paths = find_meshes(src)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(p, out / mesh_id(src, p)) for p in paths]
    skipped = sum(1 for _, d in todo if is_finished(d))
    todo = [(p, d) for p, d in todo if not is_finished(d)]
    cores = len(os.sched_getaffinity(0))
    workers = max(1, min(workers, len(todo) or 1))
    threads = max(1, cores // workers)
    results: list[dict] = []
    started = time.perf_counter()

    def report_progress():
        if progress is not None:
            progress(len(results), len(todo))

    if workers == 1:
        _init_worker(config.render, threads)
        try:
            for path, out_dir in todo:
                results.append(_work(str(path), str(out_dir), config))
                report_progress()
        finally:
            if _WORKER.get("renderer") is not None:
                _WORKER.pop("renderer").close()
    else:
        pending = list(todo)
        attempts = 0
        while pending and attempts < 2:
            attempts += 1
            crashed = []
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=(config.render, threads)) as pool:
                futures = {pool.submit(_work, str(p), str(d), config): (p, d) for p, d in pending}
                for future in as_completed(futures):
                    try:
                        results.append(future.result())
                        report_progress()
                    except BrokenProcessPool:
                        crashed.append(futures[future])
            pending = crashed
        for path, _ in pending:
            results.append({"source": str(path), "ok": False, "error": "the worker process died twice while on this mesh (a crash, or a worker that could not start)"})
            report_progress()

    failed = [{"source": r["source"], "error": r["error"]} for r in results if not r["ok"]]
    flagged = [{"source": r["source"], "warning": r["warning"]} for r in results if "warning" in r]
    report = {"source": str(src), "meshes": len(paths), "done": sum(r["ok"] for r in results),
              "skipped": skipped, "failed": failed, "warnings": flagged, "workers": workers,
              "seconds": round(time.perf_counter() - started, 3)}
    save_json_atomic(out / "report.json", report)
    write_manifest(out)
    return report


def write_manifest(out) -> dict:
    """Rebuild ``manifest.json`` from every finished mesh folder under ``out``."""
    out = Path(out)
    entries = []
    for meta_path in sorted(out.glob("*/meta.json")):
        meta = _finished_meta(meta_path.parent)
        if meta is None:
            continue
        views = meta.get("views")
        entries.append({"id": meta_path.parent.name, "source": str(meta.get("source", "")),
                        "samples": f"{meta_path.parent.name}/samples.npz",
                        "meta": f"{meta_path.parent.name}/meta.json",
                        "views": len(views["rgba"]) if isinstance(views, dict) and isinstance(views.get("rgba"), list)
                        else 0})
    manifest = {"format_version": FORMAT_VERSION, "count": len(entries), "meshes": entries}
    save_json_atomic(out / "manifest.json", manifest)
    return manifest
