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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import pybullet_data

    from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
    from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig, gl_backend

    root = Path(pybullet_data.getDataPath()) / "random_urdfs"
    sources = sorted(root.glob("*/*.obj"))[: args.meshes]
    render = None
    if args.views:
        try:
            MeshRenderer(RenderConfig(views=args.views)).close()
            render = RenderConfig(views=args.views)
        except RenderBackendError as exc:
            print(f"# renders skipped: {exc}")
    config = PreprocessConfig(render=render, device=args.device)
    print(f"# preprocess_pybullet: {len(sources)} meshes, {os.cpu_count()} cores, device {args.device}, "
          f"renders {args.views if render else 0} x {render.resolution if render else 0}px via "
          f"{gl_backend() if render else '-'}, samples 3 x 65536, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for path in sources:
            shutil.copytree(path.parent, src / path.parent.name)
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
