"""``kubik 3d preprocess --ray [ADDRESS]``: the same per-mesh work as Ray tasks, on one machine or a cluster.

Ray is an optional extra (``pip install "kubikai[ray]"``, or ``pip install "ray[client]>=2.40"``;
``[client]`` brings grpcio, which Ray Client needs). With no
address a local Ray cluster is started for the run (``num_cpus`` CPUs, all of this machine's by
default) and stopped after it; with ``HOST:PORT`` (``ray start --head`` prints it), ``ray://HOST:PORT``
(Ray Client) or ``auto`` the run joins that cluster, whose nodes must have kubikai installed. A
cluster with token authentication wants ``RAY_AUTH_MODE=token`` and its token (``RAY_AUTH_TOKEN`` or
~/.ray/auth_token) in the driver's environment; Ray sends no token to an address given explicitly
unless told so. Each task takes one CPU and no GPU (Ray hides the GPUs from it), so the distances
are computed on the CPU.

Each mesh is one task running :func:`.preprocess.process_one`, the function of the local run, so the
files, report, manifest, resume and shards are the local run's (:mod:`.preprocess`). Ray re-runs a
task whose worker or node was lost (``max_retries``); a mesh's own error is a result, never
retried. The driver hands out at most ``TASKS_PER_WORKER`` tasks per cluster CPU at a time and
takes results as they finish (``ray.wait``), so an input list of millions of meshes streams.

Nodes need not share a file system with the driver. Each task checks what its node sees: the
run's marker file in ``OUT/.kubik-ray`` (then it sees OUT) and the mesh at its path with the size
and modification time the driver saw (then it sees the mesh). A node that sees both works in
place, as the local run does. One that does not see the mesh answers so at once, and the driver
sends the mesh through the object store with the files of its folder it names (an OBJ's
materials and textures, a glTF's buffers and images): at most ``MAX_SENT_MESH_BYTES`` per mesh (a
larger one is a failure that says so) and ``MAX_SENT_BYTES_IN_FLIGHT`` in all at a time. One that
does not see OUT writes the mesh into a temporary folder of its own and returns the finished files;
the driver writes them into ``OUT/.kubik-partial`` and renames the folder into place, as the local
run does, so a node lost mid-mesh leaves nothing in OUT and the files are the same byte for byte.
"""
from __future__ import annotations

import contextlib
import importlib.util
import mmap
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

from ...common.bounded_json import loads as bounded_loads
from ..storage import write_bytes_atomic
from .preprocess import (PARTIAL, TASKS_PER_WORKER, PreprocessConfig, ensure_worker, process_one, publish,
                         run_preprocess)

INSTALL_HINT = 'pip install "kubikai[ray]" (or pip install "ray>=2.40")'
CLIENT_INSTALL_HINT = 'pip install "kubikai[ray]" (or pip install "ray[client]>=2.40")'
LOCAL_OBJECT_STORE_BYTES = 256 << 20   # the local cluster's nodes share the files: tasks return small dicts
MARKER_FOLDER = ".kubik-ray"           # in OUT: the run's marker, which tells a worker whether it sees OUT
CLIENT_CONNECT_TRIES = 3               # a Ray Client connection whose per-client server died at its start
MAX_SENT_MESH_BYTES = 256 << 20        # a mesh (with the files it names) sent to a worker that cannot see it
MAX_SENT_BYTES_IN_FLIGHT = 1 << 30     # meshes sent to workers and not finished yet, all together
MAX_REFERENCED_FILES = 64              # files an OBJ or glTF may name that are sent with it
MAX_REFERENCE_SCAN = 64 << 20          # bytes of a .gltf read when looking for names
_MTLLIB = re.compile(rb"^[ \t]*mtllib[ \t]+([^\r\n]{1,4096})", re.MULTILINE)
_TEXTURE_MAP = re.compile(rb"^[ \t]*(?:map_\w+|bump|disp|decal|norm|refl)[ \t]+([^\r\n]{1,4096})",
                          re.MULTILINE | re.IGNORECASE)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}")
_ADDRESS = re.compile(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):([0-9]{1,5})")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_address(address: str) -> None:
    """Refuse, in one line and before Ray waits on it, an address that is no cluster: a malformed
    one, or one where nothing listens; and a Ray Client address (``ray://``) without grpcio
    (ImportError)."""
    if address == "auto":
        return
    match = _ADDRESS.fullmatch(address)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"--ray {address[:100]!r}: not a cluster address; give HOST:PORT (what `ray start --head` "
                         "prints, port 6379 by default), ray://HOST:PORT for Ray Client, auto, or nothing to start "
                         "a local cluster")
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise ImportError(f"--ray {address}: Ray Client needs the grpcio package, which is not installed: "
                          f"{CLIENT_INSTALL_HINT}")
    host = match.group(1).strip("[]")
    try:
        socket.create_connection((host, int(match.group(2))), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                              "with `ray start --head` on that machine, or leave ADDRESS out for a local "
                              "cluster") from None


def _sees_same_file(path: str, stamp: tuple[int, int] | None) -> bool:
    """Whether this node sees the driver's file at ``path``: same size and modification time as the
    driver saw (a shared file system, or a copy made with its times kept). No stamp: the driver
    could not read it either, and the per-mesh work reports that."""
    if stamp is None:
        return True
    try:
        found = os.stat(path)
    except OSError:
        return False
    return (found.st_size, found.st_mtime_ns) == stamp


def _run_task(path: str, out_dir: str, config: PreprocessConfig, work: Callable, marker: str,
              stamp: tuple[int, int] | None, source: dict[str, bytes] | None = None) -> dict:
    """A Ray task: set up this worker process once (its renderer), then the per-mesh work.

    Where this node sees the driver's files (the run's marker in OUT, the mesh at its path) the
    work reads and writes them in place. Where it does not, it asks for the mesh (``needs_source``)
    and is sent again with ``source``, the mesh file and the files it names, and/or works in a
    folder of its own and returns the finished files (``files``) for the driver to write into OUT."""
    try:
        ensure_worker(config.render, threads=1)  # one CPU per task
    except Exception as exc:  # e.g. no GL on this node: every mesh sent here fails the same way
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return {"source": path, "ok": False,
                "error": f"the Ray worker on {socket.gethostname()} cannot render ({type(exc).__name__}: {message})"}
    if source is None and not _sees_same_file(path, stamp):
        return {"source": path, "ok": False, "needs_source": True}
    sees_out = os.path.exists(marker)
    in_place = source is None and sees_out   # a node that sees everything needs no folder of its own
    with contextlib.nullcontext() if in_place else tempfile.TemporaryDirectory(prefix="kubik-ray-") as scratch:
        read_from = None
        if source is not None:
            folder = Path(scratch, "source")
            for name, data in source.items():   # relative names the driver checked: the mesh first
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            read_from = str(folder / next(iter(source)))
        target = out_dir if sees_out else str(Path(scratch, "out", Path(out_dir).name))
        result = work(path, target, config, read_from=read_from)
        if result["ok"] and not sees_out:
            result["files"] = {item.name: item.read_bytes() for item in sorted(Path(target).iterdir())}
    return result


def _write_finished(out_dir: str, files: dict[str, bytes]) -> None:
    """Write a mesh's files that a worker without OUT returned, the way the local run does: into a
    fresh folder under ``OUT/.kubik-partial``, renamed to ``out_dir`` when complete."""
    target = Path(out_dir)
    partial = target.parent / PARTIAL / f"{target.name}.{secrets.token_hex(6)}"
    try:
        for name, data in files.items():
            if not _PLAIN_NAME.fullmatch(name):
                raise ValueError(f"a Ray worker returned a file named {name[:100]!r}, which no mesh folder holds")
            write_bytes_atomic(partial / name, data)
        publish(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def files_to_send(path: str, limit: int) -> dict[str, int]:
    """What a worker that cannot see ``path`` needs, by size: the mesh file (first) and the files of
    its folder that it names (an OBJ's material libraries and their textures, a glTF's buffers and
    images), keyed by their path relative to that folder. ValueError (one line) when they come to
    more than ``limit`` bytes or the mesh cannot be read here."""
    mesh = Path(path)
    sizes = {}
    for name in (mesh.name, *referenced_files(mesh)):
        try:
            sizes[name] = (mesh.parent / name).stat().st_size
        except OSError as exc:
            if name == mesh.name:
                raise ValueError(f"cannot be read here ({exc.strerror or exc})") from None
    total = sum(sizes.values())
    if total > limit:
        raise ValueError(f"{_size(total)} with the files it names, more than the {_size(limit)} a Ray worker that "
                         "cannot see the driver's files is sent; put the meshes on storage every node sees at the "
                         "same path")
    return sizes


def read_files(path: str, names) -> dict[str, bytes]:
    """The bytes of ``names`` (from :func:`files_to_send`) in ``path``'s folder."""
    folder = Path(path).parent
    files = {}
    for name in names:
        try:
            files[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise ValueError(f"{name}: cannot be read here ({exc.strerror or exc})") from None
    return files


def _size(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 100_000 else f"{count:,} bytes"


def referenced_files(mesh: Path) -> list[str]:
    """Files in ``mesh``'s folder (or below) that it names, as load_mesh's resolver would read them:
    an OBJ's ``mtllib`` files and the texture maps those name, a .gltf's external buffers and
    images. Names that leave the folder are left out, as the resolver refuses them."""
    found: list[str] = []
    folder = mesh.parent.resolve()

    def keep(name: str) -> None:
        name = name.strip().replace("\\", "/")
        if not name or "://" in name or name.startswith("data:"):
            return
        resolved = (folder / name).resolve()
        if resolved.is_relative_to(folder) and resolved.is_file():
            relative = resolved.relative_to(folder).as_posix()
            if relative not in found and relative != mesh.name:
                found.append(relative)

    suffix = mesh.suffix.lower()
    try:
        if suffix == ".obj":
            for names in _statements(mesh, _MTLLIB):
                for name in (names, *names.split()):   # one name with spaces, or several names
                    keep(name)
            for library in list(found):
                for names in _statements(folder / library, _TEXTURE_MAP):
                    keep(names.split()[-1])            # options (-s 1 1 1 ...) come before the name
        elif suffix == ".gltf":
            document = bounded_loads((folder / mesh.name).read_bytes(), max_bytes=MAX_REFERENCE_SCAN)
            for item in [*document.get("buffers", []), *document.get("images", [])]:
                if isinstance(item, dict) and isinstance(item.get("uri"), str):
                    keep(item["uri"])
    except (OSError, ValueError, AttributeError, TypeError):  # unreadable here: the worker's load reports it
        pass
    return found[:MAX_REFERENCED_FILES]


def _statements(path: Path, pattern: re.Pattern) -> Iterator[str]:
    """The argument of every line of ``path`` that ``pattern`` matches (at C speed: an OBJ may
    hold millions of lines)."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for match in pattern.finditer(data):
            yield match.group(1).decode("utf-8", "replace")


class _Marker:
    """A file in ``OUT/.kubik-ray`` named after this run: a worker that sees it sees OUT."""

    def __init__(self, out: Path):
        self.path = Path(out) / MARKER_FOLDER / f"run-{secrets.token_hex(8)}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # another run's marker is there
            pass


def ray_results(tasks: Iterator[tuple[str, str]], config: PreprocessConfig, *, ray, out, in_flight: int,
                max_retries: int, work: Callable = process_one, max_mesh_bytes: int = MAX_SENT_MESH_BYTES,
                max_bytes_in_flight: int = MAX_SENT_BYTES_IN_FLIGHT) -> Iterator[dict]:
    """Results of ``tasks`` (meshes of OUT ``out``) run as Ray tasks, in completion order, at most
    ``in_flight`` tasks and ``max_bytes_in_flight`` bytes of meshes sent to workers at once."""
    remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_run_task)
    config_ref, work_ref = ray.put(config), ray.put(work)   # sent once, not with every task
    marker = _Marker(out)
    pending: dict = {}        # ObjectRef -> (mesh path, its folder, bytes sent with it)
    waiting: deque = deque()  # (mesh path, its folder, sizes of its files) for workers that cannot see them
    sent = [0]                # bytes of meshes sent with the pending tasks

    def submit(path: str, out_dir: str, sizes: dict | None = None) -> None:
        """Hand a mesh out; with ``sizes``, send its files along (read only now: the bytes in
        flight stay bounded)."""
        try:
            found = os.stat(path)
            stamp = (found.st_size, found.st_mtime_ns)
        except OSError:
            stamp = None
        source = ray.put(read_files(path, sizes)) if sizes else None
        size = sum(sizes.values()) if sizes else 0
        pending[remote.remote(path, out_dir, config_ref, work_ref, str(marker.path), stamp, source)] = \
            (path, out_dir, size)
        sent[0] += size

    def collect() -> dict | None:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        path, out_dir, size = pending.pop(ready)
        sent[0] -= size
        try:
            result = ray.get(ready)
        except ray.exceptions.RayTaskError as exc:  # raised past process_one's own net: never a lost worker
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            message = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ""
            return {"source": path, "ok": False, "error": f"{type(cause).__name__}: {message}"}
        except ray.exceptions.RayError as exc:  # the worker or node died on every try
            return {"source": path, "ok": False,
                    "error": f"the Ray worker running this mesh was lost {max_retries + 1} time(s) "
                             f"({type(exc).__name__}: a crash, or a node that left the cluster)"}
        if result.pop("needs_source", False):  # that node cannot see the mesh: send it
            try:
                waiting.append((path, out_dir, files_to_send(path, max_mesh_bytes)))
            except ValueError as exc:
                return {"source": path, "ok": False, "error": str(exc)}
            return None
        files = result.pop("files", None)
        if files is not None:
            try:
                _write_finished(out_dir, files)
            except (OSError, ValueError) as exc:
                return {"source": path, "ok": False,
                        "error": f"cannot write the finished mesh into {Path(out_dir).parent} ({exc})"}
        return result

    tasks = iter(tasks)
    try:
        while True:
            while len(pending) < in_flight:  # hand out work: meshes to send first, then new ones
                if waiting:
                    if sent[0] and sent[0] + sum(waiting[0][2].values()) > max_bytes_in_flight:
                        break  # the bytes in flight are at their bound: wait for a task to finish
                    path, out_dir, sizes = waiting.popleft()
                    try:
                        submit(path, out_dir, sizes)
                    except ValueError as exc:  # gone or unreadable since it was sized
                        yield {"source": path, "ok": False, "error": str(exc)}
                    continue
                task = next(tasks, None)
                if task is None:
                    break
                submit(*task)
            if not pending:
                return
            result = collect()
            if result is not None:
                yield result
    finally:
        marker.remove()
        if pending:  # the run stopped early (Ctrl-C): stop its tasks; meshes not finished stay undone
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.wait(list(pending), num_returns=len(pending), timeout=60)  # settled before the caller goes on


def preprocess_on_ray(src, out, config: PreprocessConfig, *, address: str | None = None,
                      num_cpus: int | None = None, max_retries: int = 3,
                      progress: Callable[[int, int | None], None] | None = None, shards=None,
                      shard_size: int = 1000, work: Callable = process_one,
                      max_mesh_bytes: int = MAX_SENT_MESH_BYTES) -> dict:
    """Preprocess ``src`` into ``out`` on a Ray cluster; returns the report of
    :func:`.preprocess.run_preprocess` (``workers``: the cluster's CPUs).

    A Ray session already open in this process is used as it is (and left open); otherwise one is
    opened (see the module docstring) and closed at the end. ``work`` is the per-mesh function
    (tests wrap :func:`.preprocess.process_one` to kill a worker); ``max_mesh_bytes``: the most a
    mesh with the files it names may weigh when it must be sent to a worker that cannot see it."""
    ray = import_ray()
    if not Path(src).exists():  # before a cluster starts
        raise FileNotFoundError(f"{src}: no such file or folder")
    opened_here = not ray.is_initialized()
    if opened_here:
        _connect(ray, address, num_cpus)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

        def runner(tasks):
            return ray_results(tasks, config, ray=ray, out=out, in_flight=cpus * TASKS_PER_WORKER,
                               max_retries=max_retries, work=work, max_mesh_bytes=max_mesh_bytes)

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
        wants_token = ConnectionError(
            f"--ray {address}: the Ray cluster there wants its authentication token; set RAY_AUTH_MODE=token and "
            "give the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray get-auth-token` on the head "
            "node prints it)")
        if address.startswith("ray://") and _client_server_refuses_token(address):
            raise wants_token
        try:
            _init_retrying_client(ray, address, options)
        except Exception as exc:  # Ray's errors span ConnectionError, RuntimeError, ValueError ...
            if _refused_for_token(exc):
                raise wants_token from None
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(f"--ray {address}: cannot join the Ray cluster there ({message})") from None
    else:
        ray.init(num_cpus=num_cpus or len(os.sched_getaffinity(0)), include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)


def _init_retrying_client(ray, address: str, options: dict) -> None:
    """``ray.init(address)``; a Ray Client address is tried up to ``CLIENT_CONNECT_TRIES`` times
    while the head answers "Initialization failure from server": its client server loses, now and
    then, the server process it starts for each client as that process starts (Ray issue 63202, a
    fork while gRPC runs), and a new connection gets a new one."""
    for attempt in range(1, CLIENT_CONNECT_TRIES + 1):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionAbortedError:
            if not address.startswith("ray://") or attempt == CLIENT_CONNECT_TRIES:
                raise
            ray.shutdown()   # what the failed connection left behind


def _client_server_refuses_token(address: str) -> bool:
    """Whether the Ray Client server at ``address`` (``ray://HOST:PORT``) refuses this driver for its
    authentication token (none, or another one). Ray Client sends the token when the driver has one
    (RAY_AUTH_MODE=token), but takes a refusal for a server not ready yet: it retries for half a
    minute and then says only "ray client connection timeout". One PING, which the head's client
    server answers itself, through the channel Ray Client would open, tells it at once."""
    try:
        import grpc
        from ray._private.grpc_utils import init_grpc_channel  # adds the driver's token, as Ray Client does
        from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc
    except ImportError:  # an older Ray, without token authentication
        return False
    channel = init_grpc_channel(address.removeprefix("ray://"))
    try:
        ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(
            ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING), timeout=10)
    except grpc.RpcError as exc:  # anything else is left to ray.init, which retries and reports it
        return exc.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
    return False


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
