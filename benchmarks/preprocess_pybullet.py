"""Whole `kubik 3d preprocess` throughput on pybullet_data's random_urdfs meshes, in meshes/hour.

Runs the same pipeline (load, clean, normalise, samples + SDF, renders, files) over the first
``--meshes`` objects of pybullet_data/random_urdfs (1,000 procedural meshes shipped in the
pybullet wheel) twice in one run: once with one worker (the baseline) and once with ``--workers``
processes, into fresh folders, and prints one line each with the ratio to the baseline. The
pipeline settings are the command's defaults unless changed here.

    python benchmarks/preprocess_pybullet.py [--meshes 24] [--workers 2] [--views 12] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pybullet_set(args):
    """(the first ``args.meshes`` random_urdfs meshes, the preprocess config for ``args.views``
    and ``args.device``, a line describing the settings); renders are dropped, with a note,
    where the machine has no OpenGL backend. Shared with preprocess_ray.py."""
    import pybullet_data

    from kubik_core.recon3d.data.preprocess import PreprocessConfig
    from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig, gl_backend

    sources = sorted((Path(pybullet_data.getDataPath()) / "random_urdfs").glob("*/*.obj"))[: args.meshes]
    render = None
    if args.views:
        try:
            MeshRenderer(RenderConfig(views=args.views)).close()
            render = RenderConfig(views=args.views)
        except RenderBackendError as exc:
            print(f"# renders skipped: {exc}")
    settings = (f"device {args.device}, renders {args.views if render else 0} x "
                f"{render.resolution if render else 0}px via {gl_backend() if render else '-'}, samples 3 x 65536")
    return sources, PreprocessConfig(render=render, device=args.device), settings


def copy_sources(sources: list[Path], src: Path) -> Path:
    """Each mesh's folder copied under ``src`` (the benchmark's input folder)."""
    for path in sources:
        shutil.copytree(path.parent, src / path.parent.name)
    return src


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from kubik_core.recon3d.data.preprocess import preprocess_folder

    sources, config, settings = pybullet_set(args)
    print(f"# preprocess_pybullet: {len(sources)} meshes, {os.cpu_count()} cores, {settings}, "
          f"load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        src = copy_sources(sources, Path(tmp) / "src")
        baseline = None
        for workers in (1, args.workers):
            out = Path(tmp) / f"out{workers}"
            start = time.perf_counter()
            report = preprocess_folder(src, out, config, workers=workers)
            seconds = time.perf_counter() - start
            rate = report["done"] * 3600.0 / seconds
            baseline = baseline or rate
            print(f"preprocess pybullet random_urdfs  cpu  workers={workers}  {report['done']} done "
                  f"{len(report['failed'])} failed  {seconds:7.1f} s  {rate:8.0f} meshes/hour  "
                  f"{rate / baseline:.2f}x the 1-worker baseline", flush=True)
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
