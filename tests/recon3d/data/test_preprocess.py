"""`kubik 3d preprocess` on real meshes: layout, failures in the report, resume, manifest."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig
from kubik_core.recon3d.data.samples import SampleConfig
from kubik_core.recon3d.mesh.io import load_mesh
from kubik_core.recon3d.sdf import MeshSDF

SMALL = SampleConfig(surface=2000, near=2000, uniform=2000)


@pytest.fixture
def source(tmp_path, pybullet_objs):
    """Three real pybullet meshes in sub-folders, a non-manifold open mesh, four broken files."""
    src = tmp_path / "src"
    for path in pybullet_objs:
        (src / path.parent.name).mkdir(parents=True)
        shutil.copy(path, src / path.parent.name / path.name)
    (src / "broken").mkdir()
    (src / "broken" / "garbage.obj").write_text("not a mesh at all\n")
    (src / "broken" / "points_only.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (src / "broken" / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    (src / "broken" / "empty.ply").write_bytes(b"")
    # An open box (one side missing) with a fin: three faces on one edge, non-manifold. Usable.
    box = trimesh.creation.box()
    fin = np.vstack([box.vertices, [[0.5, 1.5, 0.0]]])
    edge = box.edges_unique[0]
    faces = np.vstack([box.faces[2:], [[edge[0], edge[1], 8]]])
    trimesh.Trimesh(fin, faces, process=False).export(src / "zz_nonmanifold.obj")
    return src


def test_preprocess_writes_the_layout_and_reports_bad_meshes(source, tmp_path):
    render = RenderConfig(views=2, ring=1, resolution=48)
    try:
        MeshRenderer(render).close()
    except RenderBackendError:  # no GL here: the samples are still checked
        render = None
    out = tmp_path / "out"
    report = preprocess_folder(source, out, PreprocessConfig(samples=SMALL, render=render))
    assert report["meshes"] == 8 and report["done"] == 4 and report["skipped"] == 0
    errors = {f["source"].split("/")[-1]: f["error"] for f in report["failed"]}
    assert set(errors) == {"garbage.obj", "points_only.obj", "nan.obj", "empty.ply"}
    assert "NaN" in errors["nan.obj"] and "no triangle mesh" in errors["points_only.obj"]
    assert all(errors.values())
    assert json.loads((out / "report.json").read_text()) == report

    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["id"] for m in manifest["meshes"]] == ["000__000", "001__001", "002__002", "zz_nonmanifold"]
    with np.load(out / "zz_nonmanifold" / "samples.npz") as fin:  # the open box still has an inside
        box_centre = -fin["normalization_center"] / fin["normalization_scale"]  # source origin
        centre = np.linalg.norm(fin["uniform_points"] - box_centre, axis=1) < 0.2
        assert centre.any() and (fin["uniform_sdf"][centre] < 0).all()
    meta = json.loads((out / "000__000" / "meta.json").read_text())
    with np.load(out / "000__000" / "samples.npz") as samples:
        arrays = dict(samples)
    # Surface samples mapped back with the stored transform lie on the original mesh.
    original = load_mesh(meta["source"])
    center, scale = arrays["normalization_center"], float(arrays["normalization_scale"])
    assert meta["normalization"]["scale"] == scale
    back = arrays["surface_points"] * scale + center
    assert np.abs(MeshSDF(original.vertices, original.faces)(back)).max() < 1e-4 * scale
    assert arrays["near_sdf"].shape == (2000,) and np.abs(arrays["uniform_points"]).max() <= 1.0
    if render is not None:
        assert meta["views"]["rgba"] == ["view_000.png", "view_001.png"]
        with np.load(out / "000__000" / "views.npz") as maps:
            assert maps["depth"].shape == (2, 48, 48) and maps["normal"].shape == (2, 48, 48, 3)
        assert (out / "000__000" / "view_001.png").stat().st_size > 100


def test_preprocess_resumes_and_skips_finished_meshes(source, tmp_path):
    out = tmp_path / "out"
    config = PreprocessConfig(samples=SMALL, render=None)
    preprocess_folder(source, out, config)
    first = (out / "001__001" / "samples.npz").stat().st_mtime_ns
    (out / "002__002" / "meta.json").unlink()  # as if the run had stopped before finishing it
    seen = []
    report = preprocess_folder(source, out, config, progress=lambda done, total: seen.append((done, total)))
    assert report["skipped"] == 3 and report["done"] == 1 and len(report["failed"]) == 4
    assert seen[-1] == (5, 5)
    assert (out / "001__001" / "samples.npz").stat().st_mtime_ns == first
    assert json.loads((out / "manifest.json").read_text())["count"] == 4


@pytest.mark.slow
def test_worker_processes_give_the_same_samples(source, tmp_path):
    config = PreprocessConfig(samples=SMALL, render=None)
    preprocess_folder(source, tmp_path / "one", config, workers=1)
    report = preprocess_folder(source, tmp_path / "two", config, workers=2)
    assert report["done"] == 4 and len(report["failed"]) == 4 and report["workers"] == 2
    for name in ("000__000", "001__001", "002__002", "zz_nonmanifold"):
        with np.load(tmp_path / "one" / name / "samples.npz") as a, np.load(tmp_path / "two" / name / "samples.npz") as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
