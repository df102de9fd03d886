"""A mesh whose worker process dies (a segfault in a GL driver, an OOM kill) in the local process
pool, which now hands meshes out a few at a time: the meshes that were in flight with it are
re-run one at a time and finish; the one that kills its worker again is a failure; nothing of it
is left half written. (The Ray runner's retries: tests/recon3d/test_ray_preprocess.py.)"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubik_core.recon3d.data import preprocess
from kubik_core.recon3d.data.samples import SampleConfig

CRASHER = '''
import os
from pathlib import Path

from kubik_core.recon3d.data.preprocess import process_one as real


def process_one(path, out_dir, config):
    if path.endswith("001.obj"):
        with open(Path(out_dir).parent / "attempts", "a") as handle:
            handle.write("x")
        os._exit(1)
    return real(path, out_dir, config)
'''


@pytest.mark.timeout(300)
def test_a_crashing_mesh_costs_only_itself_in_the_process_pool(tmp_path, monkeypatch):
    pybullet_data = pytest.importorskip("pybullet_data")
    src = tmp_path / "src"
    for path in [Path(pybullet_data.getDataPath()) / "random_urdfs" / f"{i:03d}" / f"{i:03d}.obj" for i in range(4)]:
        (src / path.parent.name).mkdir(parents=True)
        shutil.copy(path, src / path.parent.name / path.name)
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "crashing_work.py").write_text(CRASHER)
    monkeypatch.syspath_prepend(str(tmp_path / "helpers"))  # the spawned workers import it from there
    import crashing_work

    monkeypatch.setattr(preprocess, "process_one", crashing_work.process_one)
    config = preprocess.PreprocessConfig(samples=SampleConfig(surface=500, near=500, uniform=500), render=None,
                                         device="cpu")
    report = preprocess.preprocess_folder(src, tmp_path / "out", config, workers=2)
    assert report["done"] == 3 and (tmp_path / "out" / "attempts").read_text() == "xx"
    assert report["failed"] == [{"source": str(src / "001" / "001.obj"), "error": "the worker process died twice "
                                 "while on this mesh (a crash, or a worker that could not start)"}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "000__000", "002__002", "003__003", "attempts", "manifest.json", "report.json"]
