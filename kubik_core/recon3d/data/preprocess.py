"""``kubik 3d preprocess``: meshes -> a training set of SDF samples and renders.

Input: a mesh file, a folder of meshes, or a manifest listing mesh paths (:func:`iter_inputs`),
read lazily so a list of millions of meshes streams. Output layout (``OUT``)::

    OUT/manifest.json          every finished mesh: id, source, files (rebuilt after each run)
    OUT/report.json            the last run: counts, one entry per failed mesh with its error, and
                               one per mesh done with a warning (faces that no orientation makes
                               consistent: its inside/outside labels may be wrong)
    OUT/<id>/samples.npz       SDF samples, layout in :mod:`.samples`
    OUT/<id>/views.npz         depth [V,H,W] float32 and normal [V,H,W,3] float16 (when rendered)
    OUT/<id>/view_000.png ...  RGBA renders, alpha 0 on background
    OUT/<id>/meta.json         normalisation, mesh statistics, sampling and camera settings,
                               cameras (convention in :mod:`.render`)

``<id>`` is the mesh's path relative to SRC (or to the manifest's folder) with separators turned
into ``__`` and the suffix dropped. A mesh is written into ``OUT/.kubik-partial/`` and its folder
renamed to ``OUT/<id>`` when complete, so ``OUT/<id>`` exists only for finished meshes (and
``meta.json``, written last, marks one): a later run skips them, an interrupted run resumes where
it stopped, and a worker killed mid-mesh leaves nothing behind. Every file is the same, byte for
byte, whichever runner made it (one process, a process pool, a Ray cluster: :mod:`.ray_preprocess`).
A mesh that fails is listed in the report and never stops the run. ``--shards`` also packs the
finished meshes into tar shards (:mod:`.shards`).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

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


MANIFEST_SUFFIXES = (".txt", ".lst")  # an input list: one mesh path per line
MAX_MANIFEST_LINE = 4096                # bytes; a longer line is recorded as a failure, not read whole
PARTIAL = ".kubik-partial"              # meshes being written; a finished one is renamed out of here
TASKS_PER_WORKER = 2                    # meshes handed out ahead, so input lists stream instead of queueing


@dataclass(frozen=True)
class MeshInput:
    """One entry of the input: a mesh to preprocess, or (``error`` set) a manifest line that names none."""
    source: str
    id: str | None = None
    path: Path | None = None
    error: str | None = None


def iter_inputs(src) -> Iterator[MeshInput]:
    """The meshes of ``src``, one at a time, in a stable order, never all in memory at once.

    ``src`` is a mesh file, a folder (searched recursively, each folder's entries in name order, so
    the order is that of ``sorted(src.rglob("*"))``), or a manifest (``.txt``/``.lst``): one path
    per line, relative to the manifest's folder or absolute inside it; blank lines and lines
    starting with ``#`` are skipped. A manifest line that cannot name a mesh in that folder comes
    out as an entry with ``error`` set (recorded as a failure: a bad line never stops the run)."""
    src = Path(src)
    if src.is_dir():
        yield from _walk(src, src)
    elif src.is_file() and src.suffix.lower() in MANIFEST_SUFFIXES:
        yield from _manifest_inputs(src)
    elif src.is_file():
        yield MeshInput(str(src), mesh_id(src, src), src)
    else:
        raise FileNotFoundError(f"{src}: no such file or folder")


def _walk(root: Path, folder: Path) -> Iterator[MeshInput]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:  # unreadable sub-folder: nothing to take from it, as rglob would do
        return
    for entry in entries:
        path = folder / entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, path)
        elif Path(entry.name).suffix.lower() in MESH_SUFFIXES and path.is_file():
            yield MeshInput(str(path), mesh_id(root, path), path)


def _manifest_inputs(manifest: Path) -> Iterator[MeshInput]:
    base = manifest.parent.resolve()
    with open(manifest, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_MANIFEST_LINE + 1), b""), start=1):
            where = f"{manifest.name} line {number}"
            if len(raw) > MAX_MANIFEST_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a block at a time
                    raw = handle.readline(1 << 16)
                yield MeshInput(where, error=f"longer than {MAX_MANIFEST_LINE} bytes; list one mesh path per line")
                continue
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                yield MeshInput(where, error="not UTF-8 text; list one mesh path per line")
                continue
            if not text or text.startswith("#"):
                continue
            if any(ord(c) < 32 for c in text):
                yield MeshInput(where, error="holds control characters; list one mesh path per line")
            elif "://" in text:
                yield MeshInput(where, error=f"{text[:200]}: URLs are not fetched; download the meshes into "
                                             f"the manifest's folder and list their paths")
            else:
                path = Path(text) if os.path.isabs(text) else base / text
                resolved = path.resolve()
                if resolved == base or not resolved.is_relative_to(base):
                    yield MeshInput(where, error=f"{text[:200]}: outside the manifest's folder {base}; "
                                                 "list only meshes inside it")
                else:
                    yield MeshInput(str(resolved), "__".join(resolved.relative_to(base).with_suffix("").parts),
                                    resolved)


def mesh_id(root: Path, path: Path) -> str:
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    return "__".join(relative.with_suffix("").parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocess_mesh(path, out_dir, config: PreprocessConfig, renderer=None, *, threads: int | None = None,
                    read_from=None) -> dict:
    """Turn one mesh file into ``out_dir/{samples.npz, views.npz, view_*.png, meta.json}``.

    ``read_from``: a copy of ``path`` to read instead (a Ray worker that cannot see the driver's
    files gets one); ``path`` is still the source recorded, so the files are the same."""
    from ..sdf import MeshSDF

    path, out_dir = Path(path), Path(out_dir)
    local = Path(read_from) if read_from is not None else path
    textured = load_mesh(local, keep_visuals=renderer is not None)
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
        "source_sha256": _sha256(local),
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


# One renderer per worker process, created on the process's first mesh and reused for every other.
_WORKER: dict = {}


def _init_worker(render_config: RenderConfig | None, threads: int) -> None:
    _WORKER["threads"] = threads
    _WORKER["renderer"] = None
    if render_config is not None:
        from .render import MeshRenderer

        _WORKER["renderer"] = MeshRenderer(render_config)
    _WORKER["render_config"] = render_config


def ensure_worker(render_config: RenderConfig | None, threads: int) -> None:
    """Set this process up for :func:`process_one` once (a Ray worker runs many meshes)."""
    if "threads" not in _WORKER or _WORKER.get("render_config") != render_config:
        _init_worker(render_config, threads)


def process_one(path: str, out_dir: str, config: PreprocessConfig, *, read_from: str | None = None) -> dict:
    """The per-mesh work of every runner (serial, process pool, Ray): preprocess ``path`` into a
    fresh folder under ``OUT/.kubik-partial`` and rename it to ``out_dir`` when complete, so a
    worker that dies mid-mesh leaves nothing under ``out_dir``. Returns {"source", "ok",
    "seconds", and "error" or maybe "warning"}; a bad mesh is a result, never an exception.
    ``read_from``: a local copy of ``path`` to read (errors still name ``path``)."""
    started = time.perf_counter()
    target = Path(out_dir)
    partial = target.parent / PARTIAL / f"{target.name}.{secrets.token_hex(6)}"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # hostile numbers end in a recorded error, not noise
            meta = preprocess_mesh(path, partial, config, _WORKER.get("renderer"), threads=_WORKER.get("threads"),
                                   read_from=read_from)
        publish(partial, target)
        result = {"source": path, "ok": True, "seconds": round(time.perf_counter() - started, 3)}
        orientation = meta["mesh"]["orientation"]
        if not orientation["consistent"]:
            result["warning"] = (f"{orientation['non_orientable_parts']} part(s) of the mesh cannot be oriented "
                                 "consistently (a Moebius-like surface): its inside/outside labels may be wrong")
        return result
    except MeshError as exc:
        message = str(exc).replace(read_from, path) if read_from else str(exc)
        return {"source": path, "ok": False, "error": message.removeprefix(f"{path}: ")}
    except Exception as exc:  # a bad mesh must never stop the run: record what happened
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = message.replace(read_from, path) if read_from else message
        if len(message) > 300:  # e.g. GL errors that quote a whole shader
            message = message[:300] + "..."
        return {"source": path, "ok": False, "error": f"{type(exc).__name__}: {message}"}
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def publish(partial: Path, target: Path) -> None:
    """Rename a complete mesh folder into place. What sits there unfinished (a run of an older
    version, a crash before this layout) is replaced; a finished one (the same mesh listed twice)
    is kept."""
    if target.exists():
        if is_finished(target):
            return
        shutil.rmtree(target)
    try:
        os.rename(partial, target)
    except OSError:
        if not is_finished(target):  # not the benign race of a mesh listed twice
            raise


def serial_results(tasks: Iterator[tuple[str, str]], config: PreprocessConfig, threads: int) -> Iterator[dict]:
    """Run the meshes one after another in this process."""
    _init_worker(config.render, threads)
    try:
        for path, out_dir in tasks:
            yield process_one(path, out_dir, config)
    finally:
        if _WORKER.get("renderer") is not None:
            _WORKER.pop("renderer").close()
        _WORKER.clear()


def pool_results(tasks: Iterator[tuple[str, str]], config: PreprocessConfig, workers: int,
                 threads: int) -> Iterator[dict]:
    """Run the meshes in ``workers`` processes, at most ``TASKS_PER_WORKER`` per worker handed out
    at a time, results in completion order. A worker that crashes (a segfault in a GL driver, say)
    breaks the pool: the meshes it held go to a fresh pool one at a time, and a mesh whose worker
    dies on it alone as well is a failure."""
    retry: list[tuple[str, str, int]] = []
    tasks = iter(tasks)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(config.render, threads))

    pool, in_flight = new_pool(), {}
    try:
        while True:
            # After a crash the meshes it cost are re-run one at a time, so a second crash names its mesh.
            isolating = bool(retry) or any(attempts > 1 for _, _, attempts in in_flight.values())
            while len(in_flight) < (1 if isolating else workers * TASKS_PER_WORKER):
                task = retry.pop() if retry else next(((p, d, 1) for p, d in tasks), None)
                if task is None:
                    break
                in_flight[pool.submit(process_one, task[0], task[1], config)] = task
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            if not any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                for future in done:
                    in_flight.pop(future)
                    yield future.result()
                continue
            pool.shutdown(cancel_futures=True)  # every mesh it held is lost with it
            for future, (path, out_dir, attempts) in list(in_flight.items()):
                if future.done() and future.exception() is None:
                    yield future.result()
                elif attempts < 2:
                    retry.append((path, out_dir, attempts + 1))
                else:
                    yield {"source": path, "ok": False, "error": "the worker process died twice while on this "
                           "mesh (a crash, or a worker that could not start)"}
            pool, in_flight = new_pool(), {}
    finally:
        pool.shutdown(cancel_futures=True)


Runner = Callable[[Iterator[tuple[str, str]]], Iterator[dict]]


def preprocess_folder(src, out, config: PreprocessConfig, *, workers: int = 1,
                      progress: Callable[[int, int | None], None] | None = None,
                      shards=None, shard_size: int = 1000) -> dict:
    """Preprocess every mesh of ``src`` (a mesh, a folder or a manifest, see :func:`iter_inputs`)
    into ``out`` on this machine; returns the report (also in report.json).

    Finished meshes are skipped. ``workers`` processes run side by side, each with its own
    renderer. ``shards``: a folder to also pack the dataset into tar shards (:mod:`.shards`)."""
    cores = len(os.sched_getaffinity(0))
    workers = max(1, workers)
    threads = max(1, cores // workers)
    if workers == 1:
        def runner(tasks):
            return serial_results(tasks, config, threads)
    else:
        def runner(tasks):
            return pool_results(tasks, config, workers, threads)
    return run_preprocess(src, out, runner, workers=workers, progress=progress, shards=shards,
                          shard_size=shard_size)


def run_preprocess(src, out, runner: Runner, *, workers: int, progress=None, shards=None,
                   shard_size: int = 1000) -> dict:
    """The run shared by every runner: stream the inputs, skip finished meshes, hand the rest to
    ``runner`` (an iterator of (mesh path, its folder) -> results), collect the report, rebuild the
    manifest, pack shards. Only failures and warnings are kept in memory, so a list of millions of
    meshes streams. ``progress(done, total)``: total is None until the last mesh is handed out."""
    src, out = Path(src), Path(out)
    inputs = iter_inputs(src)
    first = next(inputs, None)  # a missing source fails here, before the output folder is made
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)  # meshes a killed run left half written
    counts = {"meshes": 0, "skipped": 0, "queued": 0}
    total: list[int | None] = [None]
    failed: list[dict] = []
    flagged: list[dict] = []
    started = time.perf_counter()

    def tasks() -> Iterator[tuple[str, str]]:
        held = None  # one task held back, so the total is known when the last one is handed out
        for item in (_chain(first, inputs) if first is not None else ()):
            counts["meshes"] += 1
            if item.error is not None:
                failed.append({"source": item.source, "error": item.error})
                continue
            if is_finished(out / item.id):
                counts["skipped"] += 1
                continue
            if held is not None:
                yield held
            held = (str(item.path), str(out / item.id))
            counts["queued"] += 1
        total[0] = counts["queued"]
        if held is not None:
            yield held

    done = handled = 0
    for result in runner(tasks()):
        handled += 1
        if result["ok"]:
            done += 1
        else:
            failed.append({"source": result["source"], "error": result["error"]})
        if "warning" in result:
            flagged.append({"source": result["source"], "warning": result["warning"]})
        if progress is not None:
            progress(handled, total[0])
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    report = {"source": str(src), "meshes": counts["meshes"], "done": done, "skipped": counts["skipped"],
              "failed": sorted(failed, key=lambda f: f["source"]),
              "warnings": sorted(flagged, key=lambda f: f["source"]), "workers": workers,
              "seconds": round(time.perf_counter() - started, 3)}
    write_manifest(out)
    if shards is not None:
        from .shards import write_shards

        report["shards"] = write_shards(out, shards, shard_size)
    save_json_atomic(out / "report.json", report)
    return report


def _chain(first: MeshInput, rest: Iterator[MeshInput]) -> Iterator[MeshInput]:
    yield first
    yield from rest


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
