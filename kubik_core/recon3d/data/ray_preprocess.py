"""``kubik 3d preprocess --ray [ADDRESS]``: the same per-mesh work as Ray tasks, on one machine or a cluster.

Ray is an optional extra (``pip install "kubikai[ray]"``, or ``pip install "ray>=2.40"``). With no
address a local Ray cluster is started for the run (``num_cpus`` CPUs, all of this machine's by
default) and stopped after it; with ``HOST:PORT`` (``ray start --head`` prints it), ``ray://HOST:PORT``
(Ray Client) or ``auto`` the run joins that cluster, whose nodes must have kubikai installed and see
the meshes and OUT at the same paths (a shared file system). A cluster with token authentication
wants ``RAY_AUTH_MODE=token`` and its token (``RAY_AUTH_TOKEN`` or ~/.ray/auth_token) in the driver's
environment; Ray sends no token to an address given explicitly unless told so. Each task takes one
CPU and no GPU (Ray hides the GPUs from it), so the distances are computed on the CPU.

Each mesh is one task running :func:`.preprocess.process_one`, the function of the local run, so the
files, report, manifest, resume and shards are the local run's (:mod:`.preprocess`). Ray re-runs a
task whose worker or node was lost (``max_retries``); a mesh's own error is a result, never
retried. The driver hands out at most ``TASKS_PER_WORKER`` tasks per cluster CPU at a time and
takes results as they finish (``ray.wait``), so an input list of millions of meshes streams.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Callable, Iterator

from .preprocess import TASKS_PER_WORKER, PreprocessConfig, ensure_worker, process_one, run_preprocess

INSTALL_HINT = 'pip install "kubikai[ray]" (or pip install "ray>=2.40")'
LOCAL_OBJECT_STORE_BYTES = 256 << 20   # tasks return small dicts: a local cluster needs little shared memory
_ADDRESS = re.compile(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):([0-9]{1,5})")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_address(address: str) -> None:
    """Refuse, in one line and before Ray waits on it, an address that is no cluster: a malformed
    one, or one where nothing listens."""
    if address == "auto":
        return
    match = _ADDRESS.fullmatch(address)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"--ray {address[:100]!r}: not a cluster address; give HOST:PORT (what `ray start --head` "
                         "prints, port 6379 by default), ray://HOST:PORT for Ray Client, auto, or nothing to start "
                         "a local cluster")
    host = match.group(1).strip("[]")
    try:
        socket.create_connection((host, int(match.group(2))), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                              "with `ray start --head` on that machine, or leave ADDRESS out for a local "
                              "cluster") from None


def _run_task(path: str, out_dir: str, config: PreprocessConfig, work: Callable) -> dict:
    """A Ray task: set up this worker process once (its renderer), then the per-mesh work."""
    try:
        ensure_worker(config.render, threads=1)  # one CPU per task
    except Exception as exc:  # e.g. no GL on this node: every mesh sent here fails the same way
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return {"source": path, "ok": False,
                "error": f"the Ray worker on {socket.gethostname()} cannot render ({type(exc).__name__}: {message})"}
    return work(path, out_dir, config)


def ray_results(tasks: Iterator[tuple[str, str]], config: PreprocessConfig, *, ray, in_flight: int,
                max_retries: int, work: Callable = process_one) -> Iterator[dict]:
    """Results of ``tasks`` run as Ray tasks, in completion order, at most ``in_flight`` at once."""
    remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_run_task)
    config_ref, work_ref = ray.put(config), ray.put(work)   # sent once, not with every task
    pending: dict = {}   # ObjectRef -> mesh path

    def collect() -> dict:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        path = pending.pop(ready)
        try:
            return ray.get(ready)
        except ray.exceptions.RayTaskError as exc:  # raised past process_one's own net: never a lost worker
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            message = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ""
            return {"source": path, "ok": False, "error": f"{type(cause).__name__}: {message}"}
        except ray.exceptions.RayError as exc:  # the worker or node died on every try
            return {"source": path, "ok": False,
                    "error": f"the Ray worker running this mesh was lost {max_retries + 1} time(s) "
                             f"({type(exc).__name__}: a crash, or a node that left the cluster)"}

    try:
        for path, out_dir in tasks:
            while len(pending) >= in_flight:
                yield collect()
            pending[remote.remote(path, out_dir, config_ref, work_ref)] = path
        while pending:
            yield collect()
    finally:
        if pending:  # the run stopped early (Ctrl-C): stop its tasks; meshes not finished stay undone
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.wait(list(pending), num_returns=len(pending), timeout=60)  # settled before the caller goes on


def preprocess_on_ray(src, out, config: PreprocessConfig, *, address: str | None = None,
                      num_cpus: int | None = None, max_retries: int = 3,
                      progress: Callable[[int, int | None], None] | None = None, shards=None,
                      shard_size: int = 1000, work: Callable = process_one) -> dict:
    """Preprocess ``src`` into ``out`` on a Ray cluster; returns the report of
    :func:`.preprocess.run_preprocess` (``workers``: the cluster's CPUs).

    A Ray session already open in this process is used as it is (and left open); otherwise one is
    opened (see the module docstring) and closed at the end. ``work`` is the per-mesh function
    (tests wrap :func:`.preprocess.process_one` to kill a worker)."""
    ray = import_ray()
    if not Path(src).exists():  # before a cluster starts
        raise FileNotFoundError(f"{src}: no such file or folder")
    opened_here = not ray.is_initialized()
    if opened_here:
        _connect(ray, address, num_cpus)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

        def runner(tasks):
            return ray_results(tasks, config, ray=ray, in_flight=cpus * TASKS_PER_WORKER,
                               max_retries=max_retries, work=work)

        return run_preprocess(src, out, runner, workers=cpus, progress=progress, shards=shards,
                              shard_size=shard_size)
    finally:
        if opened_here:
            ray.shutdown()


def _connect(ray, address: str | None, num_cpus: int | None) -> None:
    import logging

    options = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        check_address(address)
        try:
            ray.init(address=address, **options)
        except Exception as exc:  # Ray's errors span ConnectionError, RuntimeError, ValueError ...
            if _refused_for_token(exc):
                raise ConnectionError(
                    f"--ray {address}: the Ray cluster there wants its authentication token; set "
                    "RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token "
                    "(`ray get-auth-token` on the head node prints it)") from None
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(f"--ray {address}: cannot join the Ray cluster there ({message})") from None
    else:
        ray.init(num_cpus=num_cpus or len(os.sched_getaffinity(0)), include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)


def _refused_for_token(exc: BaseException) -> bool:
    """Whether joining failed because the cluster uses token authentication (Ray 2.60's ``ray start``
    turns it on when the machine has a token, e.g. one an earlier local ``ray.init()`` generated) and
    this driver sent none or another one: Ray reports it as "Failed to connect", the reason only in
    the text of a chained error."""
    seen = 0
    while exc is not None and seen < 8:
        if "InvalidAuthToken" in str(exc) or "AuthenticationError" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
