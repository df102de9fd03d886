"""`kubik 3d preprocess --ray ADDRESS` on a Ray cluster of several nodes on this machine, one of
which cannot see the driver's files.

The cluster (conftest.py's hidden_cluster, shared with test_ray_client.py): a head with no CPUs (so every mesh runs on a
worker node), a 2-CPU worker node started in a mount namespace of its own where a tmpfs hides
this test session's temporary folder (the meshes, OUT, everything the tests write: it sees
neither, as a cloud VM without a shared file system would not), and later a 1-CPU worker node
that sees them. Each node is a `ray start` process of its own. Needs root and `unshare --mount`; skipped with the reason
otherwise (and without Ray). Several nodes on one machine are not several machines: the network
is the loopback, but the file systems each node sees are truly different.

The tests run in order, on that one cluster (Ray takes seconds to start): first the hidden node
alone, then both worker nodes, then the seeing node is killed. Where a test needs tasks on both
nodes, the tasks on the hidden node wait (in a folder both nodes see) for a task of the seeing
node, so that Ray's scheduler cannot give the hidden node's free CPUs every mesh."""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal as signal_module
import sys
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

from kubik_testing.ray_nodes import (CONFIG, MESHES, REPO, SAMPLES, files_of, run_kubik,  # noqa: E402
                                     same_files, same_report)

pytestmark = pytest.mark.timeout(300)
SIGNAL_WAIT_S = 60   # at most this long a task on the hidden node waits for the seeing node's


@pytest.fixture(scope="module")
def cluster(hidden_cluster):
    """conftest.py's hidden_cluster with this process joined as a driver; yields its RayNodes."""
    import logging

    from ray import cloudpickle  # the pickler Ray sends functions with

    ray.init(address=hidden_cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # sent by value: workers need not import it
    try:
        _wait_for_cpus(2)
        yield hidden_cluster
    finally:
        ray.shutdown()


def _wait_for_cpus(count: int) -> None:
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < count:
        assert time.monotonic() < deadline, ray.cluster_resources()
        time.sleep(0.3)


def _sees(path: str) -> bool:
    return os.path.exists(path)


def _wait_for_the_seeing_node(signal: Path) -> None:
    """On the hidden node: hold this CPU until the seeing node has done a mesh (``signal``, in a
    folder both nodes see), at most SIGNAL_WAIT_S; while the hidden node's CPUs are held, Ray must
    place the run's other tasks on the seeing node."""
    deadline = time.monotonic() + SIGNAL_WAIT_S
    while not signal.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _where(signal: Path, path: str, out_dir: str, config, read_from=None):
    """The per-mesh work, saying which node ran it and whether that node saw the mesh itself; on
    the hidden node it first waits for the seeing node to have done a mesh."""
    if not os.path.exists(path):
        _wait_for_the_seeing_node(Path(signal))
    result = process_one(path, out_dir, config, read_from=read_from)
    if result["ok"] and os.path.exists(path):
        Path(signal).touch()
    return {**result, "node": ray.get_runtime_context().get_node_id(), "saw_source": os.path.exists(path)}


@pytest.fixture
def signal(cluster, tmp_path):
    """A file path, not there yet, in a folder that every node sees (the cluster's own, outside the
    hidden one)."""
    folder = cluster.temp / f"signal-{tmp_path.name}"
    folder.mkdir()
    yield folder / "seeing-node-worked"
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- one worker node, without the files
def test_the_hidden_node_truly_cannot_see_the_driver_files(cluster, ray_source):
    # Only that node has CPUs: a task runs there.
    sees = ray.remote(num_cpus=1)(_sees)
    assert ray.get([sees.remote(str(ray_source / "000" / "000.obj")), sees.remote(str(ray_source.parent)),
                    sees.remote(str(REPO / "kubik_core"))]) == [False, False, True]


def test_a_node_without_the_files_gets_them_from_the_driver_and_matches_the_local_run(cluster, ray_source,
                                                                                     ray_reference, tmp_path):
    done = run_kubik("3d", "preprocess", ray_source, tmp_path / "dataset", *SAMPLES, "--json", "--shards",
                     tmp_path / "shards", "--shard-size", "3", "--ray", cluster.address,
                     env=cluster.env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["workers"] == 2 and same_report(report, ray_reference[1])
    same_files(tmp_path / "dataset", ray_reference[0])   # also: no marker, no partial folder left in OUT
    assert files_of(tmp_path / "shards") == files_of(ray_reference[0].parent / "reference_shards")

    # Resumed: every finished mesh is skipped.
    again = run_kubik("3d", "preprocess", ray_source, tmp_path / "dataset", *SAMPLES, "--json", "--ray",
                      cluster.address, env=cluster.env, cwd=tmp_path, timeout=240)
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 4


def test_a_mesh_too_large_to_send_is_a_failure_in_one_line(cluster, ray_source, tmp_path):
    report = preprocess_on_ray(ray_source, tmp_path / "out", CONFIG, max_mesh_bytes=5_000)
    size = (ray_source / "000" / "000.obj").stat().st_size
    assert report["done"] == 0 and {"source": str(ray_source / "000" / "000.obj"), "error": (
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
    ours, theirs = files_of(tmp_path / "remote" / "dataset"), files_of(tmp_path / "local" / "dataset")
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


def test_meshes_sent_to_workers_stay_within_the_bytes_in_flight(cluster, ray_source, tmp_path):
    spans = {}
    for name, bound in (("bounded", 1), ("unbounded", 1 << 30)):
        out = tmp_path / name
        tasks = [(str(ray_source / folder / f"{folder[-3:]}.obj"), str(out / mesh))
                 for folder, mesh in zip(("000", "001", "002", "nested/003"), MESHES)]
        results = list(ray_results(iter(tasks), CONFIG, ray=ray, out=out, in_flight=4, max_retries=0, work=_timed,
                                   max_bytes_in_flight=bound))
        assert len(results) == 4 and all(r["ok"] and r["sent"] for r in results), results
        spans[name] = sorted(r["span"] for r in results)
    # Bound 1 byte: one mesh sent at a time, though the node runs two tasks at once; unbounded: together.
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans["bounded"], spans["bounded"][1:]))
    assert any(later[0] < earlier[1] for earlier, later in zip(spans["unbounded"], spans["unbounded"][1:]))


# ---------------------------------------------------------------- two worker nodes, one seeing the files
def test_tasks_run_on_both_nodes_and_the_output_matches_the_local_run(cluster, ray_source, ray_reference, tmp_path,
                                                                      signal):
    cluster.start_worker("seeing")
    _wait_for_cpus(3)
    out, shards, results = tmp_path / "dataset", tmp_path / "shards", []

    def runner(tasks):
        for result in ray_results(tasks, CONFIG, ray=ray, out=out, in_flight=4, max_retries=1,
                                  work=functools.partial(_where, signal)):
            results.append(result)
            yield result

    report = run_preprocess(ray_source, out, runner, workers=3, shards=shards, shard_size=3)
    assert same_report(report, ray_reference[1])
    same_files(out, ray_reference[0])
    assert files_of(shards) == files_of(ray_reference[0].parent / "reference_shards")
    assert not (out / MARKER_FOLDER).exists() and not (out / PARTIAL).exists()
    done = [r for r in results if r["ok"]]
    assert len(done) == 4, results
    nodes = {r["node"]: r["saw_source"] for r in done}
    assert len(nodes) == 2 and set(nodes.values()) == {True, False}, nodes


def _kills_its_node_first(marker_dir: Path, signal: Path, path: str, out_dir: str, config, read_from=None):
    """Per-mesh work that, on the first mesh it gets on the node that sees the files (there
    ``marker_dir`` exists), half writes it and kills that node's raylet (the node crashes: its
    worker processes die with it). On the hidden node it waits for that first."""
    marker_dir = Path(marker_dir)
    if not marker_dir.exists():
        _wait_for_the_seeing_node(Path(signal))
    elif not (marker_dir / "killed").exists():
        (marker_dir / "killed").write_text(path)
        half = Path(out_dir).parent / PARTIAL / f"{Path(out_dir).name}.dying"
        half.mkdir(parents=True)
        (half / "samples.npz").write_bytes(b"half a file")
        Path(signal).touch()
        os.kill(os.getppid(), signal_module.SIGKILL)   # the raylet that started this worker
        os._exit(1)
    return process_one(path, out_dir, config, read_from=read_from)


def test_a_node_lost_mid_mesh_is_retried_on_the_other_and_leaves_nothing_partial(cluster, ray_source, ray_reference,
                                                                                 tmp_path, signal):
    raylet = cluster.raylet("seeing")
    report = preprocess_on_ray(ray_source, tmp_path / "dataset", CONFIG, max_retries=3,
                               work=functools.partial(_kills_its_node_first, tmp_path, signal))
    assert (tmp_path / "killed").exists() and not raylet.is_running()
    assert report["done"] == 4 and same_report(report, ray_reference[1]), report
    same_files(tmp_path / "dataset", ray_reference[0])
