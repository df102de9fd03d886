"""`kubik 3d preprocess --ray` on a real local Ray cluster (2 CPUs): the same files as the local run,
byte for byte; a worker killed mid-mesh is retried and leaves nothing half written; an interrupted
run resumes. One cluster serves the module (Ray takes seconds to start); skipped without Ray.

An existing cluster (--ray ADDRESS) is a Ray head started by `ray start` as a process of its own
(conftest.py's token_head, shared with test_ray_client.py), joined by the command run as another
process, as a user does it."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from kubik_core.recon3d.data.preprocess import PARTIAL, process_one  # noqa: E402
from kubik_core.recon3d.data.ray_preprocess import preprocess_on_ray  # noqa: E402

from kubik_testing.ray_nodes import CONFIG, MESHES, SAMPLES, files_of, run_kubik, same_report  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    from ray import cloudpickle  # the pickler Ray sends functions with

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=96 << 20, log_to_driver=False)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # sent by value: workers need not import it
    yield
    ray.shutdown()


# ---------------------------------------------------------------- an existing cluster (--ray ADDRESS)
def test_the_command_joins_an_existing_cluster_and_matches_the_local_run(token_head, ray_source, ray_reference,
                                                                       tmp_path):
    done = run_kubik("3d", "preprocess", ray_source, tmp_path / "dataset", *SAMPLES, "--json", "--shards",
                     tmp_path / "shards", "--shard-size", "3", "--ray", token_head.address,
                     env=token_head.env, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["workers"] == 1 and same_report(report, ray_reference[1])
    local, _ = ray_reference
    ours, theirs = files_of(tmp_path / "dataset"), files_of(local)
    assert ours.keys() == theirs.keys() and {f"{m}/samples.npz" for m in MESHES} <= ours.keys()
    assert all(ours[name] == theirs[name] for name in ours if name != "report.json")
    assert files_of(tmp_path / "shards") == files_of(local.parent / "reference_shards")


def test_a_cluster_that_wants_a_token_says_so_in_one_line(token_head, ray_source, tmp_path):
    # Ray sends no token to an explicit address unless RAY_AUTH_MODE=token; it retries 20 times,
    # a second apart, before giving up: 2 are enough here.
    env = {name: value for name, value in token_head.env.items() if not name.startswith("RAY_AUTH_")}
    done = run_kubik("3d", "preprocess", ray_source, tmp_path / "dataset", *SAMPLES, "--ray", token_head.address,
                     env={**env, "RAY_NUM_REDIS_GET_RETRIES": "2"}, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"kubik 3d: error: --ray {token_head.address}: the Ray cluster there wants its authentication token; set "
        "RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray "
        "get-auth-token` on the head node prints it)")
    assert not (tmp_path / "dataset").exists()


def test_an_address_where_nothing_listens_is_one_line(ray_source, tmp_path):
    from kubik_testing.ray_nodes import free_port

    port = free_port()
    done = run_kubik("3d", "preprocess", ray_source, tmp_path / "dataset", *SAMPLES, "--ray", f"127.0.0.1:{port}",
                     env=dict(os.environ), cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"kubik 3d: error: --ray 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one "
        "with `ray start --head` on that machine, or leave ADDRESS out for a local cluster")
    assert not (tmp_path / "dataset").exists()


# ---------------------------------------------------------------- a local cluster opened in this process
def test_ray_run_matches_the_local_run_byte_for_byte(cluster, ray_source, ray_reference, tmp_path):
    seen = []
    report = preprocess_on_ray(ray_source, tmp_path / "dataset", CONFIG, shards=tmp_path / "shards", shard_size=3,
                               progress=lambda done, total: seen.append((done, total)))
    local, local_report = ray_reference
    assert report["workers"] == 2 and same_report(report, local_report)
    assert report["failed"] == [{"source": str(ray_source / "broken.obj"), "error": "the file holds no triangle mesh"}]
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == [1, 2, 3, 4, 5]
    ours, theirs = files_of(tmp_path / "dataset"), files_of(local)
    assert ours.keys() == theirs.keys() and {f"{m}/samples.npz" for m in MESHES} <= ours.keys()
    assert all(ours[name] == theirs[name] for name in ours if name != "report.json")
    assert files_of(tmp_path / "shards") == files_of(local.parent / "reference_shards")
    assert report["shards"] == {"folder": str(tmp_path / "shards"), "shards": 2, "samples": 4, "written": 2}


def _dies_first_time(marker_dir: Path, path: str, out_dir: str, config, read_from=None):
    """Per-mesh work whose worker process dies (os._exit, as in a segfault or an OOM kill) half-way
    through mesh 001 the first time, after writing part of it; later tries do the real work."""
    marker_dir = Path(marker_dir)
    if path.endswith("001.obj"):
        with open(marker_dir / "attempts", "a") as handle:
            handle.write("x")
        if not (marker_dir / "killed").exists():
            (marker_dir / "killed").touch()
            half = Path(out_dir).parent / PARTIAL / f"{Path(out_dir).name}.dying"
            half.mkdir(parents=True)
            (half / "samples.npz").write_bytes(b"half a file")
            os._exit(1)
    return process_one(path, out_dir, config, read_from=read_from)


class Escapes(BaseException):
    """An error that gets past the per-mesh function's own net (which catches Exception)."""


def _raises_on_001(marker_dir: Path, path: str, out_dir: str, config, read_from=None):
    if path.endswith("001.obj"):
        with open(Path(marker_dir) / "raised", "a") as handle:
            handle.write("x")
        raise Escapes("a bug, not a lost worker")
    return process_one(path, out_dir, config, read_from=read_from)


def test_a_killed_worker_is_retried_and_leaves_no_partial_output(cluster, ray_source, ray_reference, tmp_path):
    work = functools.partial(_dies_first_time, tmp_path)
    report = preprocess_on_ray(ray_source, tmp_path / "out", CONFIG, max_retries=2, work=work)
    assert (tmp_path / "attempts").read_text() == "xx"  # killed once, then done by a fresh worker
    assert report["done"] == 4 and len(report["failed"]) == 1
    local, _ = ray_reference
    assert files_of(tmp_path / "out" / "001__001") == files_of(local / "001__001")
    assert not (tmp_path / "out" / PARTIAL).exists()

    # No retries left: the mesh is a failure in the report, the run goes on, nothing of it is kept.
    (tmp_path / "killed").unlink()
    report = preprocess_on_ray(ray_source, tmp_path / "again", CONFIG, max_retries=0, work=work)
    lost = [f for f in report["failed"] if f["source"].endswith("001.obj")]
    assert len(lost) == 1 and lost[0]["error"].startswith("the Ray worker running this mesh was lost 1 time(s)")
    assert report["done"] == 3 and not (tmp_path / "again" / "001__001").exists()
    assert not (tmp_path / "again" / PARTIAL).exists()


def test_an_interrupted_run_resumes_without_redoing_finished_meshes(cluster, ray_source, ray_reference, tmp_path):
    out = tmp_path / "out"

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt  # Ctrl-C in the driver, with tasks still running on the cluster

    with pytest.raises(KeyboardInterrupt):
        preprocess_on_ray(ray_source, out, CONFIG, progress=stop_after_two)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json")}
    assert 1 <= len(finished) <= 4 and all(name in MESHES for name in finished)

    report = preprocess_on_ray(ray_source, out, CONFIG)
    assert report["skipped"] == len(finished) and report["done"] == 4 - len(finished)
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json") if p.parent.name in finished} == finished
    local, _ = ray_reference
    ours, theirs = files_of(out), files_of(local)
    assert ours.keys() == theirs.keys() and all(ours[n] == theirs[n] for n in ours if n != "report.json")


def test_the_command_runs_on_the_open_cluster_and_prints_the_report(cluster, ray_source, ray_reference, tmp_path, kubik):
    rc, out, err = kubik("3d", "preprocess", ray_source, tmp_path / "dataset", "--views", "0", "--device", "cpu",
                         "--surface", "1500", "--near", "1500", "--uniform", "1500", "--json", "--ray",
                         "--shards", tmp_path / "shards", "--shard-size", "3")
    report = json.loads(out)
    assert rc == 0 and report["workers"] == 2 and same_report(report, ray_reference[1])
    assert files_of(tmp_path / "shards") == files_of(ray_reference[0].parent / "reference_shards")


def test_an_error_of_the_mesh_itself_is_reported_not_retried(cluster, ray_source, tmp_path):
    report = preprocess_on_ray(ray_source, tmp_path / "out", CONFIG, max_retries=3,
                               work=functools.partial(_raises_on_001, tmp_path))
    assert (tmp_path / "raised").read_text() == "x" and report["done"] == 3
    assert {"source": str(ray_source / "001" / "001.obj"), "error": "Escapes: a bug, not a lost worker"} in report["failed"]



@pytest.fixture
def task_here():
    """The Ray task's function, run in this process; the worker set-up it leaves is cleared after."""
    from kubik_core.recon3d.data import preprocess
    from kubik_core.recon3d.data.ray_preprocess import _run_task

    yield _run_task
    preprocess._WORKER.clear()


def test_a_node_that_sees_out_but_not_the_mesh_reads_the_sent_copy_and_writes_in_place(ray_source, ray_reference,
                                                                                      tmp_path, task_here):
    """The task function itself, in this process, for a mesh path that does not exist here (as on a
    node without the driver's meshes) with its bytes sent along, and OUT's marker present."""
    _run_task = task_here

    out = tmp_path / "dataset"
    marker = out / ".kubik-ray" / "run-test"
    marker.parent.mkdir(parents=True)
    marker.touch()
    elsewhere = str(tmp_path / "not-here" / "000" / "000.obj")
    sent = {"000.obj": (ray_source / "000" / "000.obj").read_bytes()}
    asked = _run_task(elsewhere, str(out / "000__000"), CONFIG, process_one, str(marker), (1, 1))
    assert asked == {"source": elsewhere, "ok": False, "needs_source": True}

    result = _run_task(elsewhere, str(out / "000__000"), CONFIG, process_one, str(marker), (1, 1), sent)
    assert result["ok"] and "files" not in result   # written in place, nothing sent back
    local = ray_reference[0] / "000__000"
    assert (out / "000__000" / "samples.npz").read_bytes() == (local / "samples.npz").read_bytes()
    ours, theirs = (json.loads((folder / "meta.json").read_text()) for folder in (out / "000__000", local))
    assert ours.pop("source") == elsewhere and theirs.pop("source") == str(ray_source / "000" / "000.obj")
    assert ours == theirs

    # Without the marker (OUT not seen) the same task returns the finished files instead.
    marker.unlink()
    result = _run_task(elsewhere, str(out / "again"), CONFIG, process_one, str(marker), (1, 1), sent)
    assert sorted(result["files"]) == ["meta.json", "samples.npz"] and not (out / "again").exists()
    assert result["files"]["samples.npz"] == (local / "samples.npz").read_bytes()


def test_the_files_a_mesh_names_are_found_and_stay_inside_its_folder(tmp_path):
    from kubik_core.recon3d.data.ray_preprocess import referenced_files

    folder = tmp_path / "meshes"
    (folder / "tex").mkdir(parents=True)
    for name in ("a.mtl", "b.mtl", "my lib.mtl", "tex/t.png", "bump.png", "data.bin", "image.png"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    (folder / "a.mtl").write_text("newmtl m\nmap_Kd -s 1 1 1 tex/t.png\nbump bump.png\nmap_Ks ../outside.png\n")
    (folder / "m.obj").write_text("# a mesh\nmtllib a.mtl b.mtl\nv 0 0 0\n  mtllib my lib.mtl\nmtllib missing.mtl\n"
                                  "mtllib /etc/passwd\nf 1 1 1\n")
    assert referenced_files(folder / "m.obj") == ["a.mtl", "b.mtl", "my lib.mtl", "tex/t.png", "bump.png"]
    (folder / "m.gltf").write_text(json.dumps({"buffers": [{"uri": "data.bin"}, {"uri": "data:application/x;base64,AA"}],
                                               "images": [{"uri": "image.png"}, {"uri": "https://example.com/i.png"},
                                                          {"uri": "../outside.png"}, "junk"]}))
    assert referenced_files(folder / "m.gltf") == ["data.bin", "image.png"]
    (folder / "deep.gltf").write_text("[" * 10_000)   # hostile JSON: nothing named, no error
    assert referenced_files(folder / "deep.gltf") == []
