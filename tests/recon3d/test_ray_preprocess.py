"""`kubik 3d preprocess --ray` on a real local Ray cluster (2 CPUs): the same files as the local run,
byte for byte; a worker killed mid-mesh is retried and leaves nothing half written; an interrupted
run resumes. One cluster serves the module (Ray takes seconds to start); skipped without Ray."""
from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from kubik_core.recon3d.data.preprocess import PARTIAL, PreprocessConfig, preprocess_folder, process_one  # noqa: E402
from kubik_core.recon3d.data.ray_preprocess import preprocess_on_ray  # noqa: E402
from kubik_core.recon3d.data.samples import SampleConfig  # noqa: E402

pytestmark = pytest.mark.timeout(300)
CONFIG = PreprocessConfig(samples=SampleConfig(surface=1500, near=1500, uniform=1500), render=None, device="cpu")
MESHES = ("000__000", "001__001", "002__002", "nested__003__003")


@pytest.fixture(scope="module")
def cluster():
    import cloudpickle

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=96 << 20, log_to_driver=False)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory, pybullet_objs):
    """Four real pybullet meshes (one a folder deeper) and a file that is no mesh."""
    src = tmp_path_factory.mktemp("ray") / "src"
    objs = [*pybullet_objs, pybullet_objs[0].parent.parent / "003" / "003.obj"]
    for path in objs[:3]:
        (src / path.parent.name).mkdir(parents=True)
        shutil.copy(path, src / path.parent.name / path.name)
    (src / "nested" / "003").mkdir(parents=True)
    shutil.copy(objs[3], src / "nested" / "003" / "003.obj")
    (src / "broken.obj").write_text("no mesh here\n")
    return src


@pytest.fixture(scope="module")
def reference(source):
    """The single-process run, with shards: what every Ray run must reproduce."""
    out = source.parent / "dataset"  # the same folder name as the runs below: shards record it
    report = preprocess_folder(source, out, CONFIG, shards=source.parent / "reference_shards", shard_size=3)
    assert report["done"] == 4 and len(report["failed"]) == 1
    return out, report


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _same_report(a: dict, b: dict) -> bool:
    ignore = ("seconds", "workers", "source", "shards")
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def test_ray_run_matches_the_local_run_byte_for_byte(cluster, source, reference, tmp_path):
    seen = []
    report = preprocess_on_ray(source, tmp_path / "dataset", CONFIG, shards=tmp_path / "shards", shard_size=3,
                               progress=lambda done, total: seen.append((done, total)))
    local, local_report = reference
    assert report["workers"] == 2 and _same_report(report, local_report)
    assert report["failed"] == [{"source": str(source / "broken.obj"), "error": "the file holds no triangle mesh"}]
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == [1, 2, 3, 4, 5]
    ours, theirs = _files(tmp_path / "dataset"), _files(local)
    assert ours.keys() == theirs.keys() and {f"{m}/samples.npz" for m in MESHES} <= ours.keys()
    assert all(ours[name] == theirs[name] for name in ours if name != "report.json")
    assert _files(tmp_path / "shards") == _files(local.parent / "reference_shards")
    assert report["shards"] == {"folder": str(tmp_path / "shards"), "shards": 2, "samples": 4, "written": 2}


def _dies_first_time(marker_dir: Path, path: str, out_dir: str, config):
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
    return process_one(path, out_dir, config)


class Escapes(BaseException):
    """An error that gets past the per-mesh function's own net (which catches Exception)."""


def _raises_on_001(marker_dir: Path, path: str, out_dir: str, config):
    if path.endswith("001.obj"):
        with open(Path(marker_dir) / "raised", "a") as handle:
            handle.write("x")
        raise Escapes("a bug, not a lost worker")
    return process_one(path, out_dir, config)


def test_a_killed_worker_is_retried_and_leaves_no_partial_output(cluster, source, reference, tmp_path):
    work = functools.partial(_dies_first_time, tmp_path)
    report = preprocess_on_ray(source, tmp_path / "out", CONFIG, max_retries=2, work=work)
    assert (tmp_path / "attempts").read_text() == "xx"  # killed once, then done by a fresh worker
    assert report["done"] == 4 and len(report["failed"]) == 1
    local, _ = reference
    assert _files(tmp_path / "out" / "001__001") == _files(local / "001__001")
    assert not (tmp_path / "out" / PARTIAL).exists()

    # No retries left: the mesh is a failure in the report, the run goes on, nothing of it is kept.
    (tmp_path / "killed").unlink()
    report = preprocess_on_ray(source, tmp_path / "again", CONFIG, max_retries=0, work=work)
    lost = [f for f in report["failed"] if f["source"].endswith("001.obj")]
    assert len(lost) == 1 and lost[0]["error"].startswith("the Ray worker running this mesh was lost 1 time(s)")
    assert report["done"] == 3 and not (tmp_path / "again" / "001__001").exists()
    assert not (tmp_path / "again" / PARTIAL).exists()


def test_an_interrupted_run_resumes_without_redoing_finished_meshes(cluster, source, reference, tmp_path):
    out = tmp_path / "out"

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt  # Ctrl-C in the driver, with tasks still running on the cluster

    with pytest.raises(KeyboardInterrupt):
        preprocess_on_ray(source, out, CONFIG, progress=stop_after_two)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json")}
    assert 1 <= len(finished) <= 4 and all(name in MESHES for name in finished)

    report = preprocess_on_ray(source, out, CONFIG)
    assert report["skipped"] == len(finished) and report["done"] == 4 - len(finished)
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/meta.json") if p.parent.name in finished} == finished
    local, _ = reference
    ours, theirs = _files(out), _files(local)
    assert ours.keys() == theirs.keys() and all(ours[n] == theirs[n] for n in ours if n != "report.json")


def test_the_command_runs_on_the_open_cluster_and_prints_the_report(cluster, source, reference, tmp_path, kubik):
    rc, out, err = kubik("3d", "preprocess", source, tmp_path / "dataset", "--views", "0", "--device", "cpu",
                         "--surface", "1500", "--near", "1500", "--uniform", "1500", "--json", "--ray",
                         "--shards", tmp_path / "shards", "--shard-size", "3")
    report = json.loads(out)
    assert rc == 0 and report["workers"] == 2 and _same_report(report, reference[1])
    assert _files(tmp_path / "shards") == _files(reference[0].parent / "reference_shards")


def test_an_error_of_the_mesh_itself_is_reported_not_retried(cluster, source, tmp_path):
    report = preprocess_on_ray(source, tmp_path / "out", CONFIG, max_retries=3,
                               work=functools.partial(_raises_on_001, tmp_path))
    assert (tmp_path / "raised").read_text() == "x" and report["done"] == 3
    assert {"source": str(source / "001" / "001.obj"), "error": "Escapes: a bug, not a lost worker"} in report["failed"]

