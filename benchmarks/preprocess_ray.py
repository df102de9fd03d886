"""`kubik 3d preprocess` locally vs `--ray` on a local Ray cluster, same meshes, one run, in meshes/hour.

Cases, each into a fresh folder, over the first ``--meshes`` objects of pybullet_data/random_urdfs:
  1. one process (the baseline),
  2. a local process pool of ``--workers`` processes (the local run at the same parallelism),
  3. Ray: a local cluster of ``--workers`` CPUs (its start-up timed apart), one task per mesh,
  4. the same again on the now warm cluster (workers started, SDF kernels loaded): the steady state,
  5. Ray across 2 nodes on this machine (`ray start` processes: a head and a worker node, 1 CPU
     each, ``--workers`` 2), both seeing the files, cold and warm,
  6. the same with the worker node in a mount namespace where the input and output folders are
     hidden (no shared file system: its meshes go through the object store and its files come
     back to the driver), cold and warm; needs root and `unshare --mount`, skipped otherwise.
Several nodes on one machine share its 2 cores and talk over the loopback: cases 5-6 measure
Ray's cost of running across nodes and of sending the files, not what more machines would add.
Then Ray's own cost per task (empty tasks through the same bounded submit/wait loop, the
driver's dispatch rate) and a paper estimate for N machines: each of C CPUs processes a mesh in
the CPU-seconds measured in case 4, capped by the driver's dispatch rate.
The estimate leaves out what one machine cannot show: shared storage bandwidth, network, stragglers.

    python benchmarks/preprocess_ray.py [--meshes 24] [--workers 2] [--views 12] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _noop(index: int) -> int:
    return index


def dispatch_rate(ray, tasks: int, in_flight: int) -> float:
    """Empty tasks per second through the driver loop of :func:`ray_results` (submit while fewer
    than ``in_flight`` are pending, take each as it finishes)."""
    remote = ray.remote(num_cpus=1)(_noop)
    ray.get(remote.remote(0))  # workers up
    pending, start = set(), time.perf_counter()
    for i in range(tasks):
        while len(pending) >= in_flight:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            pending.remove(ready)
            ray.get(ready)
        pending.add(remote.remote(i))
    ray.get(list(pending))
    return tasks / (time.perf_counter() - start)


def two_nodes(src: Path, out: Path, config, hide: Path | None) -> tuple[float, list[tuple[dict, float]]]:
    """Preprocess ``src`` cold and warm (into fresh folders under ``out``) on a cluster of a head
    and one worker node, 1 CPU each, the worker node not seeing ``hide``; returns (cluster start
    seconds, [(report, seconds)] cold and warm). Run in a process of its own: a fresh driver, as
    `kubik 3d preprocess --ray ADDRESS` is."""
    import logging

    import ray

    from kubik_core.recon3d.data.ray_preprocess import preprocess_on_ray
    from kubik_testing.ray_nodes import RayNodes, node_environment

    temp = Path(tempfile.mkdtemp(prefix="kray-"))
    nodes = RayNodes(temp, node_environment())
    try:
        start = time.perf_counter()
        nodes.start_head(cpus=1)
        nodes.start_worker("worker", cpus=1, hide=hide)
        ray.init(address=nodes.address, logging_level=logging.WARNING, log_to_driver=False)
        while ray.cluster_resources().get("CPU", 0) < 2:
            time.sleep(0.2)
        started, runs = time.perf_counter() - start, []
        for name in ("cold", "warm"):
            start = time.perf_counter()
            report = preprocess_on_ray(src, out / name, config)
            runs.append((report, time.perf_counter() - start))
        return started, runs
    finally:
        if ray.is_initialized():
            ray.shutdown()
        nodes.stop()
        shutil.rmtree(temp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--empty-tasks", type=int, default=400)
    args = parser.parse_args()

    import logging

    try:
        import ray
    except ImportError:
        print('# preprocess_ray: skipped, Ray is not installed (pip install "kubikai[ray]")')
        return

    from kubik_core.recon3d.data.preprocess import TASKS_PER_WORKER, preprocess_folder
    from kubik_core.recon3d.data.ray_preprocess import LOCAL_OBJECT_STORE_BYTES, preprocess_on_ray
    from preprocess_pybullet import copy_sources, pybullet_set

    sources, config, settings = pybullet_set(args)
    print(f"# preprocess_ray: {len(sources)} meshes, {os.cpu_count()} cores, ray {ray.__version__}, "
          f"{settings}, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        src = copy_sources(sources, Path(tmp) / "src")

        def line(case: str, report: dict, seconds: float, baseline: float | None) -> float:
            rate = report["done"] * 3600.0 / seconds
            ratio = f"{rate / baseline:.2f}x the 1-process baseline" if baseline else "baseline"
            print(f"preprocess {case:28s} cpu  {report['done']} done {len(report['failed'])} failed  "
                  f"{seconds:7.1f} s  {rate:8.0f} meshes/hour  {ratio}", flush=True)
            if report["failed"]:
                print(f"#   first failure: {report['failed'][0]}")
            return rate

        start = time.perf_counter()
        report = preprocess_folder(src, Path(tmp) / "one", config, workers=1)
        baseline = line("local, 1 process", report, time.perf_counter() - start, None)
        start = time.perf_counter()
        report = preprocess_folder(src, Path(tmp) / "pool", config, workers=args.workers)
        pool = line(f"local, {args.workers} processes", report, time.perf_counter() - start, baseline)

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 logging_level=logging.WARNING, log_to_driver=False)
        ray_start = time.perf_counter() - start
        try:
            start = time.perf_counter()
            report = preprocess_on_ray(src, Path(tmp) / "ray", config)
            on_ray = line(f"ray local, {args.workers} CPUs", report, time.perf_counter() - start, baseline)
            start = time.perf_counter()  # again, with the workers started and their SDF kernels loaded
            report = preprocess_on_ray(src, Path(tmp) / "ray_warm", config)
            warm_seconds = time.perf_counter() - start
            line(f"ray local, {args.workers} CPUs, warm", report, warm_seconds, baseline)
            rate = dispatch_rate(ray, args.empty_tasks, args.workers * TASKS_PER_WORKER)
        finally:
            ray.shutdown()

        from kubik_testing.ray_nodes import RAY_COMMAND, cannot_hide

        if not RAY_COMMAND.exists():
            print(f"# 2-node cases skipped: no `ray` command beside {sys.executable}")
        else:
            for hide in (None, Path(tmp)):
                reason = cannot_hide(hide) if hide else None
                if reason:
                    print(f"# 2 nodes, worker without the files: skipped ({reason})")
                    continue
                label = "ray 2 nodes, " + ("worker w/o files" if hide else "shared files")
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as child:
                    started, runs = child.submit(two_nodes, src, Path(tmp) / label.split(", ")[1].split()[0], config,
                                                 hide).result()
                for (two_report, seconds), warm in zip(runs, ("", ", warm")):
                    line(label + warm, two_report, seconds, baseline)
                print(f"# {label}: cluster start {started:.1f} s (not in the rates)")
    done = report["done"]
    print(f"# ray local vs process pool at {args.workers} workers, both started cold: {on_ray / pool:.2f}x; "
          f"cluster start {ray_start:.1f} s (not in the rates); Ray's own cost per mesh: {1000 / rate:.1f} ms "
          f"(empty tasks, {rate:.0f}/s through the driver loop); results are small dicts, files stay on disk")
    per_mesh = warm_seconds * args.workers / max(done, 1)  # CPU-seconds per mesh on warm Ray workers
    print(f"# paper estimate: {per_mesh:.2f} CPU-s per mesh (warm Ray run above), driver cap {rate * 3600:,.0f} "
          "meshes/hour; storage and network not modelled")
    for machines, cpus in ((1, args.workers), (10, 16), (50, 16), (200, 16)):
        hourly = min(machines * cpus * 3600.0 / per_mesh, rate * 3600.0)
        print(f"estimate  {machines:4d} machines x {cpus:2d} CPUs  {hourly:12,.0f} meshes/hour  "
              f"800k meshes in {800_000 / hourly:8.1f} h")
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
