"""A Ray cluster of several nodes on this machine, each a `ray start --block` process of its own,
one of them optionally in a mount namespace where a folder is hidden under a tmpfs (a node that
does not share the driver's file system), and what the Ray tests compare a run with. Used by
tests/recon3d/ (conftest.py's Ray fixtures, test_ray_*.py) and benchmarks/preprocess_ray.py.

Several nodes on one machine are not several machines: they talk over the loopback and share the
CPUs, but the files each one sees are truly different where a folder is hidden."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from kubik_core.recon3d.data.preprocess import PreprocessConfig
from kubik_core.recon3d.data.samples import SampleConfig

RAY_COMMAND = Path(sys.executable).with_name("ray")
REPO = Path(__file__).resolve().parents[2]
# the samples the Ray tests ask for (few: the point is where the work runs, not the work), as a
# config and as `kubik 3d preprocess` options
CONFIG = PreprocessConfig(samples=SampleConfig(surface=1500, near=1500, uniform=1500), render=None, device="cpu")
SAMPLES = ("--views", "0", "--device", "cpu", "--surface", "1500", "--near", "1500", "--uniform", "1500")
MESHES = ("000__000", "001__001", "002__002", "nested__003__003")   # the mesh folders of ray_source


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def same_report(a: dict, b: dict) -> bool:
    """Whether two preprocess reports agree on everything but timing, worker count and folders."""
    ignore = ("seconds", "workers", "source", "shards")
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def same_files(out: Path, local: Path) -> None:
    """Assert that ``out`` holds ``local``'s files byte for byte (the report aside): every mesh of
    ray_source done, no marker or partial folder left."""
    ours, theirs = files_of(out), files_of(local)
    assert ours.keys() == theirs.keys() and {f"{m}/samples.npz" for m in MESHES} <= ours.keys()
    assert [name for name in ours if name != "report.json" and ours[name] != theirs[name]] == []


def run_kubik(*args, env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``kubik ARGS`` as a process of its own (a driver apart from the cluster's processes)."""
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "kubik_core.cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cannot_hide(folder: Path) -> str | None:
    """None when this machine can start a process that sees an empty tmpfs over ``folder``; else
    why not (not root, no `unshare`, or mounts refused in a namespace)."""
    if os.geteuid() != 0:
        return "hiding the driver's files from a Ray node needs root (mount in a namespace of its own)"
    if shutil.which("unshare") is None:
        return "no `unshare` command to start a Ray node in a mount namespace of its own"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs kubik-hidden '{folder}' && test -z \"$(ls -A '{folder}')\""],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"`unshare --mount` cannot hide a folder here: {probe.stderr.strip()[:200]}"
    return None


def node_environment(**extra: str) -> dict:
    """This process's environment for the nodes (and for drivers run as processes of their own):
    no RAY_* settings of the caller, kubik_core importable, and the authentication this process's
    Ray speaks. A local ``ray.init()`` that found a token in ~/.ray/auth_token sets
    RAY_AUTH_MODE=token in this process for good, and a driver with a token cannot be reached by
    workers without one (their tasks fail with OwnerDiedError): then the nodes get that token;
    otherwise authentication is off."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    if os.environ.get("RAY_AUTH_MODE") == "token":
        token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        token = os.environ.get("RAY_AUTH_TOKEN") or token_file.read_text().strip()
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    else:
        env.update(RAY_AUTH_MODE="disabled")
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               **extra)
    return env


class RayNodes:
    """The nodes of one cluster; ``stop()`` ends them all and returns the processes that outlived
    their node (none, when all is well)."""

    def __init__(self, temp: Path, env: dict):
        self.temp, self.env, self.port = Path(temp), env, free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_address = f"ray://127.0.0.1:{free_port()}"   # the head's Ray Client server
        self.starts: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, command: list, prefix: tuple = ()) -> None:
        log = self.temp / f"{name}.log"
        with open(log, "w") as out:
            self.starts[name] = subprocess.Popen([*prefix, *map(str, command)], env=self.env, stdout=out,
                                                 stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if self.starts[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {name} did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)

    def start_head(self, cpus: int) -> None:
        self._start("head", [RAY_COMMAND, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                             f"--num-cpus={cpus}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
                             f"--ray-client-server-port={self.client_address.rsplit(':', 1)[1]}",
                             f"--temp-dir={self.temp}", "--disable-usage-stats", "--block"])

    def wait_for_client_server(self) -> None:
        """Wait until the head's Ray Client server (``client_address``) takes connections: it
        starts a moment after the head says it has started."""
        host, port = self.client_address.removeprefix("ray://").rsplit(":", 1)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray Client server at {self.client_address} did not start") from None
                time.sleep(0.3)

    def start_worker(self, name: str, cpus: int = 1, hide: Path | None = None) -> None:
        """A worker node; with ``hide``, in a mount namespace where a tmpfs covers that folder."""
        prefix = ()
        if hide is not None:
            prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f"mount -t tmpfs kubik-hidden '{hide}' && exec \"$0\" \"$@\"")
        self._start(name, [RAY_COMMAND, "start", f"--address={self.address}", "--node-ip-address=127.0.0.1",
                           f"--num-cpus={cpus}", "--disable-usage-stats", "--block"], prefix)

    def raylet(self, name: str):
        """The raylet process of node ``name`` (psutil.Process)."""
        import psutil

        return next(p for p in psutil.Process(self.starts[name].pid).children(recursive=True) if p.name() == "raylet")

    def stop(self) -> list:
        import psutil

        tree = []
        for start in self.starts.values():
            try:
                tree += psutil.Process(start.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for start in reversed(self.starts.values()):
            start.terminate()              # --block: stops the processes it started, then exits
            try:
                start.wait(60)
            except subprocess.TimeoutExpired:
                start.kill()
        _gone, alive = psutil.wait_procs(tree, timeout=30)
        for process in alive:
            process.kill()
        return alive
