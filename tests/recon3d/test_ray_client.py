"""`kubik 3d preprocess --ray ray://HOST:PORT` (Ray Client) against a real Ray head started by
`ray start --head` as a process of its own, with the command run as another process, as a user
outside the cluster runs it: the files must be the local run's, byte for byte.

With Ray Client the driver's code (the marker in OUT, the meshes' sizes and times, reading a mesh
to send) runs in the command's process, while its Ray calls (put, remote, wait, get, cancel) go
over gRPC to the head. Two clusters, both from conftest.py and shared with the other test_ray_*.py
modules: token_head, a one-CPU head with token authentication whose tasks see the files (the
command with the token runs; without it, or with another, it says so in one line), and
hidden_cluster, a head with no CPUs plus the only worker node, which cannot see the files (needs
root and `unshare --mount`, skipped otherwise), so the meshes travel from the command through the
object store and the finished files come back. Skipped without Ray or grpcio."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from kubik_core.recon3d.data.preprocess import PARTIAL  # noqa: E402
from kubik_core.recon3d.data.ray_preprocess import MARKER_FOLDER, preprocess_on_ray  # noqa: E402

from kubik_testing.ray_nodes import (CONFIG, SAMPLES, RayNodes, files_of, run_kubik, same_files,  # noqa: E402
                                     same_report)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def grpc_installed():
    pytest.importorskip("grpc", reason='Ray Client needs grpcio: pip install "kubikai[ray]"')


def _client_server_log(nodes: RayNodes) -> str:
    """The end of the head's Ray Client server logs: why a connection was refused."""
    logs = sorted(nodes.temp.glob("session_latest/logs/ray_client_server*"))
    return "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in logs)


def _client_run(nodes: RayNodes, source: Path, reference, tmp_path: Path, workers: int) -> str:
    """The command over Ray Client with the cluster's environment; checks the run against the local
    one and returns what it printed."""
    nodes.wait_for_client_server()
    done = run_kubik("3d", "preprocess", source, tmp_path / "dataset", *SAMPLES, "--json", "--shards",
                     tmp_path / "shards", "--shard-size", "3", "--ray", nodes.client_address,
                     env=nodes.env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:] + _client_server_log(nodes)
    report = json.loads(done.stdout)
    assert report["workers"] == workers and same_report(report, reference[1])
    same_files(tmp_path / "dataset", reference[0])   # also: no marker, no partial folder left in OUT
    assert files_of(tmp_path / "shards") == files_of(reference[0].parent / "reference_shards")
    return done.stdout + done.stderr


def test_ray_client_with_the_token_of_a_token_cluster_matches_the_local_run(token_head, ray_source, ray_reference,
                                                                            tmp_path, grpc_installed):
    printed = _client_run(token_head, ray_source, ray_reference, tmp_path, workers=1)
    assert token_head.env["RAY_AUTH_TOKEN"] not in printed


@pytest.mark.parametrize("auth", ["none", "another token"])
def test_ray_client_without_the_token_says_so_in_one_line(token_head, ray_source, tmp_path, auth, grpc_installed):
    token_head.wait_for_client_server()
    env = {name: value for name, value in token_head.env.items() if not name.startswith("RAY_AUTH_")}
    if auth == "another token":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
    done = run_kubik("3d", "preprocess", ray_source, tmp_path / "dataset", *SAMPLES, "--ray",
                     token_head.client_address, env=env, cwd=tmp_path, timeout=120)
    assert (done.returncode, done.stdout, done.stderr.strip()) == (2, "", (
        f"kubik 3d: error: --ray {token_head.client_address}: the Ray cluster there wants its authentication "
        "token; set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray "
        "get-auth-token` on the head node prints it)"))
    assert not (tmp_path / "dataset").exists()


@pytest.fixture
def hidden_worker_only(hidden_cluster):
    """hidden_cluster with the hidden node as its only worker, whichever tests ran before:
    test_ray_cluster.py adds the node "seeing" (and kills it in its last test); a seeing node
    still running is stopped here, and the fixture waits until the head counts the hidden node's
    two CPUs alone (a node killed moments ago is declared dead within seconds)."""
    import logging
    import time

    seeing = hidden_cluster.starts.get("seeing")
    if seeing is not None and seeing.poll() is None:
        seeing.terminate()   # `ray start --block` stops the node's processes, then exits
        seeing.wait(60)
    ray.init(address=hidden_cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            workers = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
            if workers == [2]:
                break
            assert time.monotonic() < deadline, f"worker nodes' CPUs: {workers}, want only the hidden node's [2]"
            time.sleep(0.3)
    finally:
        ray.shutdown()
    return hidden_cluster


def test_ray_client_run_with_a_worker_that_cannot_see_the_files_and_an_interrupted_one_resumes(
        hidden_worker_only, ray_source, ray_reference, tmp_path, grpc_installed):
    hidden_cluster = hidden_worker_only
    _client_run(hidden_cluster, ray_source, ray_reference, tmp_path, workers=2)

    # Ctrl-C in a Ray Client driver (this process): its pending tasks are cancelled over the client
    # connection, the marker goes, and a second run does only what the first left undone.
    out = tmp_path / "interrupted"

    def stop_after_one(done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preprocess_on_ray(ray_source, out, CONFIG, address=hidden_cluster.client_address, progress=stop_after_one)
    assert not ray.is_initialized() and not (out / MARKER_FOLDER).exists()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json")}
    assert len(finished) < 4   # a cancelled mesh's partial folder goes with the next run
    report = preprocess_on_ray(ray_source, out, CONFIG, address=hidden_cluster.client_address)
    assert report["skipped"] == len(finished) and report["done"] == 4 - len(finished)
    again = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json") if p.parent.name in finished}
    assert again == finished
    same_files(out, ray_reference[0])
    assert not (out / PARTIAL).exists()


def test_ray_client_without_grpcio_is_one_line_naming_the_extra(kubik, ray_source, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    rc, _out, err = kubik("3d", "preprocess", ray_source, tmp_path / "dataset", "--views", "0", "--ray",
                          "ray://127.0.0.1:10001")
    assert (rc, err.strip()) == (2, "kubik 3d: error: --ray ray://127.0.0.1:10001: Ray Client needs the grpcio "
                                     'package, which is not installed: pip install "kubikai[ray]" (or pip install '
                                     '"ray[client]>=2.40")')
    assert not (tmp_path / "dataset").exists()


class _ClientLosingItsServer:
    """Stands in for Ray (outside the project) whose head loses the server of the first
    ``failures`` client connections, as Ray issue 63202 does now and then."""

    def __init__(self, failures: int):
        self.failures, self.inits, self.shutdowns = failures, 0, 0

    def init(self, address, **options):
        self.inits += 1
        if self.inits <= self.failures:
            raise ConnectionAbortedError("Initialization failure from server:\n")

    def shutdown(self):
        self.shutdowns += 1


def test_a_client_connection_whose_server_died_is_tried_again_up_to_three_times():
    from kubik_core.recon3d.data.ray_preprocess import CLIENT_CONNECT_TRIES, _init_retrying_client

    flaky = _ClientLosingItsServer(failures=CLIENT_CONNECT_TRIES - 1)
    _init_retrying_client(flaky, "ray://head:10001", {})
    assert (flaky.inits, flaky.shutdowns) == (CLIENT_CONNECT_TRIES, CLIENT_CONNECT_TRIES - 1)

    lost = _ClientLosingItsServer(failures=CLIENT_CONNECT_TRIES)
    with pytest.raises(ConnectionAbortedError):
        _init_retrying_client(lost, "ray://head:10001", {})
    assert lost.inits == CLIENT_CONNECT_TRIES

    direct = _ClientLosingItsServer(failures=1)   # not Ray Client: no second try
    with pytest.raises(ConnectionAbortedError):
        _init_retrying_client(direct, "head:6379", {})
    assert direct.inits == 1
