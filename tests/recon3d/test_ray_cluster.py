"""`kubik 3d preprocess --ray ADDRESS` on a Ray cluster of several nodes on this machine, one of
which cannot see the driver's files.

The cluster (tests/kubik_testing/ray_nodes.py): a head with no CPUs (so every mesh runs on a
worker node), a 2-CPU worker node started in a mount namespace of its own where a tmpfs hides
this test session's temporary folder (the meshes, OUT, everything the tests write: it sees
neither, as a cloud VM without a shared file system would not), and later a 1-CPU worker node
that sees them. Each node is a `ray start` process of its own. Needs root and `unshare --mount`; skipped with the reason
otherwise (and without Ray). Several nodes on one machine are not several machines: the network
is the loopback, but the file systems each node sees are truly different.

The tests run in order, on the module's one cluster (Ray takes seconds to start): first the
hidden node alone, then both worker nodes, then the seeing node is killed."""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from kubik_core.recon3d.data.preprocess import (PARTIAL, PreprocessConfig, preprocess_folder,  # noqa: E402
                                                process_one, run_preprocess)
from kubik_core.recon3d.data.ray_preprocess import (MARKER_FOLDER, preprocess_on_ray,  # noqa: E402
                                                    ray_results, referenced_files)
from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig  # noqa: E402
from kubik_core.recon3d.data.samples import SampleConfig  # noqa: E402

from kubik_testing.ray_nodes import RAY_COMMAND, REPO, RayNodes, cannot_hide, node_environment  # noqa: E402

from .test_ray_preprocess import SAMPLES, _files, _kubik, _same_report  # noqa: E402

pytestmark = pytest.mark.timeout(300)
CONFIG = PreprocessConfig(samples=SampleConfig(surface=1500, near=1500, uniform=1500), render=None, device="cpu")
MESHES = ("000__000", "001__001", "002__002", "nested__003__003")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (no CPUs) and the worker node "hidden" that cannot see this session's temporary
    folder; the in-process driver joined to it. Yields the RayNodes."""
    from ray import cloudpickle  # the pickler Ray sends functions with

    if not RAY_COMMAND.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    hidden = tmp_path_factory.getbasetemp()
    reason = cannot_hide(hidden)
    if reason:
        pytest.skip(reason)
    temp = Path(tempfile.mkdtemp(prefix="kray-"))   # outside the hidden folder: every node keeps its sockets here
    # a killed node is declared dead within seconds, not Ray's default half minute
    env = node_environment(RAY_health_check_initial_delay_ms="1000", RAY_health_check_period_ms="1000",
                           RAY_health_check_timeout_ms="1000", RAY_health_check_failure_threshold="3")
    nodes = RayNodes(temp, env)
    alive = []
    try:
        nodes.start_head(cpus=0)
        nodes.start_worker("hidden", cpus=2, hide=hidden)
        ray.init(address=nodes.address, logging_level=logging.WARNING, log_to_driver=False)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # sent by value: workers need not import it
        _wait_for_cpus(2)
        yield nodes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        alive = nodes.stop()
        shutil.rmtree(temp, ignore_errors=True)
    assert not alive, f"Ray processes outlived the cluster: {alive}"


def _wait_for_cpus(count: int) -> None:
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < count:
        assert time.monotonic() < deadline, ray.cluster_resources()
        time.sleep(0.3)


@pytest.fixture(scope="module")
def source(tmp_path_factory, pybullet_objs):
    """Four real pybullet meshes (one a folder deeper) and a file that is no mesh."""
    src = tmp_path_factory.mktemp("cluster") / "src"
    objs = [*pybullet_objs, pybullet_objs[0].parent.parent / "003" / "003.obj"]
    for path, folder in zip(objs, ("000", "001", "002", "nested/003")):
        (src / folder).mkdir(parents=True)
        shutil.copy2(path, src / folder / path.name)
    (src / "broken.obj").write_text("no mesh here\n")
    return src


@pytest.fixture(scope="module")
def reference(source):
    """The single-process run, with shards: what every cluster run must reproduce."""
    out = source.parent / "dataset"  # the same folder name as the runs below: shards record it
    report = preprocess_folder(source, out, CONFIG, shards=source.parent / "reference_shards", shard_size=3)
    assert report["done"] == 4 and len(report["failed"]) == 1
    return out, report


def _same_files(out: Path, local: Path) -> None:
    ours, theirs = _files(out), _files(local)
    assert ours.keys() == theirs.keys() and {f"{m}/samples.npz" for m in MESHES} <= ours.keys()
    assert [name for name in ours if name != "report.json" and ours[name] != theirs[name]] == []


def _sees(path: str) -> bool:
    return os.path.exists(path)


def _where(path: str, out_dir: str, config, read_from=None):
    """The per-mesh work, saying which node ran it and whether that node saw the mesh itself; it
    holds its CPU a moment first, so that the run's tasks overlap (these meshes take ~0.1 s: one
    node's free CPUs could otherwise take every one)."""
    time.sleep(0.5)
    result = process_one(path, out_dir, config, read_from=read_from)
    return {**result, "node": ray.get_runtime_context().get_node_id(), "saw_source": os.path.exists(path)}


# ---------------------------------------------------------------- one worker node, without the files
def test_the_hidden_node_truly_cannot_see_the_driver_files(cluster, source):
    # Only that node has CPUs: a task runs there.
    sees = ray.remote(num_cpus=1)(_sees)
    assert ray.get([sees.remote(str(source / "000" / "000.obj")), sees.remote(str(source.parent)),
                    sees.remote(str(REPO / "kubik_core"))]) == [False, False, True]


def test_a_node_without_the_files_gets_them_from_the_driver_and_matches_the_local_run(cluster, source, reference,
                                                                                     tmp_path):
    done = _kubik("3d", "preprocess", source, tmp_path / "dataset", *SAMPLES, "--json", "--shards",
                  tmp_path / "shards", "--shard-size", "3", "--ray", cluster.address,
                  env=cluster.env, cwd=tmp_path,
                  timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["workers"] == 2 and _same_report(report, reference[1])
    _same_files(tmp_path / "dataset", reference[0])   # also: no marker, no partial folder left in OUT
    assert _files(tmp_path / "shards") == _files(reference[0].parent / "reference_shards")

    # Resumed: every finished mesh is skipped.
    again = _kubik("3d", "preprocess", source, tmp_path / "dataset", *SAMPLES, "--json", "--ray", cluster.address,
                   env=cluster.env, cwd=tmp_path, timeout=240)
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 4


def test_a_mesh_too_large_to_send_is_a_failure_in_one_line(cluster, source, tmp_path):
    report = preprocess_on_ray(source, tmp_path / "out", CONFIG, max_mesh_bytes=5_000)
    size = (source / "000" / "000.obj").stat().st_size
    assert report["done"] == 0 and {"source": str(source / "000" / "000.obj"), "error": (
        f"{size:,} bytes with the files it names, more than the 5,000 bytes a Ray worker that cannot see the "
        "driver's files is sent; put the meshes on storage every node sees at the same path")} in report["failed"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "report.json"]


def test_a_textured_mesh_travels_with_its_material_and_texture(cluster, duck_path, tmp_path):
    render = RenderConfig(views=2, ring=1, resolution=32)
    try:
        MeshRenderer(render).close()
    except RenderBackendError as exc:
        pytest.skip(f"no GL backend to render with: {exc}")
    src = tmp_path / "duck"
    src.mkdir()
    for name in ("duck.obj", "duck.mtl", "duckCM.png"):
        shutil.copy2(duck_path.parent / name, src / name)
    assert referenced_files(src / "duck.obj") == ["duck.mtl", "duckCM.png"]
    config = PreprocessConfig(samples=SampleConfig(surface=500, near=500, uniform=500), render=render, device="cpu")
    local = preprocess_folder(src, tmp_path / "local" / "dataset", config)
    remote = preprocess_on_ray(src, tmp_path / "remote" / "dataset", config)
    assert local["done"] == remote["done"] == 1
    ours, theirs = _files(tmp_path / "remote" / "dataset"), _files(tmp_path / "local" / "dataset")
    assert "duck/view_000.png" in ours and ours.keys() == theirs.keys()
    assert [name for name in ours if name != "report.json" and ours[name] != theirs[name]] == []

    # Without its texture the renders differ: the comparison above can fail.
    (src / "duckCM.png").unlink()
    bare = preprocess_folder(src, tmp_path / "bare", config)
    assert bare["done"] == 1
    assert (tmp_path / "bare" / "duck" / "view_000.png").read_bytes() != ours["duck/view_000.png"]


def _timed(path: str, out_dir: str, config, read_from=None):
    """The per-mesh work, saying when it ran and whether the mesh was sent to it."""
    started = time.time()
    result = process_one(path, out_dir, config, read_from=read_from)
    return {**result, "span": (started, time.time()), "sent": read_from is not None}


def test_meshes_sent_to_workers_stay_within_the_bytes_in_flight(cluster, source, tmp_path):
    spans = {}
    for name, bound in (("bounded", 1), ("unbounded", 1 << 30)):
        out = tmp_path / name
        tasks = [(str(source / folder / f"{folder[-3:]}.obj"), str(out / mesh))
                 for folder, mesh in zip(("000", "001", "002", "nested/003"), MESHES)]
        results = list(ray_results(iter(tasks), CONFIG, ray=ray, out=out, in_flight=4, max_retries=0, work=_timed,
                                   max_bytes_in_flight=bound))
        assert len(results) == 4 and all(r["ok"] and r["sent"] for r in results), results
        spans[name] = sorted(r["span"] for r in results)
    # Bound 1 byte: one mesh sent at a time, though the node runs two tasks at once; unbounded: together.
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans["bounded"], spans["bounded"][1:]))
    assert any(later[0] < earlier[1] for earlier, later in zip(spans["unbounded"], spans["unbounded"][1:]))


# ---------------------------------------------------------------- two worker nodes, one seeing the files
def test_tasks_run_on_both_nodes_and_the_output_matches_the_local_run(cluster, source, reference, tmp_path):
    cluster.start_worker("seeing")
    _wait_for_cpus(3)
    # Ray's scheduler, not the command, decides where each task runs: runs are repeated (each one
    # checked in full) until meshes have been done on both nodes, at most 4 times.
    nodes: dict = {}
    for attempt in range(4):
        out, shards, results = tmp_path / f"run{attempt}" / "dataset", tmp_path / f"run{attempt}" / "shards", []

        def runner(tasks):
            for result in ray_results(tasks, CONFIG, ray=ray, out=out, in_flight=4, max_retries=1, work=_where):
                results.append(result)
                yield result

        report = run_preprocess(source, out, runner, workers=3, shards=shards, shard_size=3)
        assert _same_report(report, reference[1])
        _same_files(out, reference[0])
        assert _files(shards) == _files(reference[0].parent / "reference_shards")
        assert not (out / MARKER_FOLDER).exists() and not (out / PARTIAL).exists()
        done = [r for r in results if r["ok"]]
        assert len(done) == 4, results
        nodes.update({r["node"]: r["saw_source"] for r in done})
        if len(nodes) == 2:
            break
    assert len(nodes) == 2 and set(nodes.values()) == {True, False}, nodes


def _kills_its_node_first(marker_dir: Path, path: str, out_dir: str, config, read_from=None):
    """Per-mesh work that, on the first mesh it gets on the node that sees the files, half writes it
    and kills that node's raylet (the node crashes: its worker processes die with it)."""
    marker_dir = Path(marker_dir)
    if marker_dir.exists() and not (marker_dir / "killed").exists():
        (marker_dir / "killed").write_text(path)
        half = Path(out_dir).parent / PARTIAL / f"{Path(out_dir).name}.dying"
        half.mkdir(parents=True)
        (half / "samples.npz").write_bytes(b"half a file")
        os.kill(os.getppid(), signal.SIGKILL)   # the raylet that started this worker
        os._exit(1)
    return process_one(path, out_dir, config, read_from=read_from)


def test_a_node_lost_mid_mesh_is_retried_on_the_other_and_leaves_nothing_partial(cluster, source, reference,
                                                                                 tmp_path):
    raylet = cluster.raylet("seeing")
    report = preprocess_on_ray(source, tmp_path / "dataset", CONFIG, max_retries=3,
                               work=functools.partial(_kills_its_node_first, tmp_path))
    assert (tmp_path / "killed").exists() and not raylet.is_running()
    assert report["done"] == 4 and _same_report(report, reference[1]), report
    _same_files(tmp_path / "dataset", reference[0])
