"""The `kubik 3d` commands end to end, and their errors."""
from __future__ import annotations

import json

import numpy as np
import trimesh

from kubik_core.recon3d.sdf import MeshSDF


def test_sdf_command_writes_distances_in_mesh_units(kubik, tmp_path):
    box = trimesh.creation.box(extents=(200.0, 100.0, 50.0))
    box.export(tmp_path / "box.stl")
    points = np.random.default_rng(0).uniform(-150, 150, (1000, 3))
    np.save(tmp_path / "p.npy", points)
    rc, out, _ = kubik("3d", "sdf", tmp_path / "box.stl", "--points", tmp_path / "p.npy",
                       "-o", tmp_path / "d.npy", "--json")
    assert rc == 0
    summary = json.loads(out)
    distances = np.load(tmp_path / "d.npy")
    assert summary["points"] == 1000 and summary["inside"] == int((distances < 0).sum()) > 0
    np.testing.assert_allclose(distances, MeshSDF(box.vertices, box.faces)(points))
    assert np.abs(distances).max() > 10  # not normalised units


def test_sdf_command_refuses_bad_inputs(kubik, tmp_path):
    trimesh.creation.box().export(tmp_path / "box.obj")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "flat.npy", np.zeros((4, 2)))
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan, 0.0]]))
    for name, message in [("bad.npy", "cannot be read"), ("flat.npy", "[N, 3]"), ("nan.npy", "NaN")]:
        rc, _, err = kubik("3d", "sdf", tmp_path / "box.obj", "--points", tmp_path / name, "-o", tmp_path / "d.npy")
        assert rc == 2 and message in err and not (tmp_path / "d.npy").exists()
    (tmp_path / "empty.obj").write_text("")
    np.save(tmp_path / "ok.npy", np.zeros((2, 3)))
    rc, _, err = kubik("3d", "sdf", tmp_path / "empty.obj", "--points", tmp_path / "ok.npy", "-o", tmp_path / "d.npy")
    assert rc == 2 and "empty.obj" in err


def test_eval_json_has_the_documented_keys(kubik, tmp_path):
    trimesh.creation.icosphere(subdivisions=3).export(tmp_path / "a.ply")
    trimesh.creation.box(extents=(1.6, 1.6, 1.6)).export(tmp_path / "b.obj")
    rc, out, _ = kubik("3d", "eval", tmp_path / "a.ply", tmp_path / "b.obj", "--points", 3000,
                       "--thresholds", 0.05, 0.1, "--json")
    assert rc == 0
    result = json.loads(out)
    assert set(result) == {"normalization", "points", "chamfer_l1", "chamfer_l2", "normal_consistency",
                           "fscore@0.05", "fscore@0.1", "volume_iou"}
    assert 0.4 < result["volume_iou"] < 0.95
    rc, _, err = kubik("3d", "eval", tmp_path / "missing.ply", tmp_path / "b.obj")
    assert rc == 2 and "missing.ply" in err


def test_synth_then_preprocess_resumes(kubik, tmp_path):
    args = ["--surface", 500, "--near", 500, "--uniform", 500, "--views", 0, "--json"]
    rc, out, _ = kubik("3d", "synth", tmp_path / "set", "--n", 2, *args)
    assert rc == 0
    result = json.loads(out)
    assert result["count"] == 2 and result["dataset"]["done"] == 2
    assert len(list((tmp_path / "set" / "meshes").glob("*.ply"))) == 2
    rc, out, _ = kubik("3d", "preprocess", tmp_path / "set" / "meshes", tmp_path / "set" / "dataset", *args)
    assert rc == 0 and json.loads(out)["skipped"] == 2
    rc, _, err = kubik("3d", "preprocess", tmp_path / "nowhere", tmp_path / "out", "--views", 0)
    assert rc == 2 and "nowhere" in err
    rc, _, err = kubik("3d", "synth", tmp_path / "x", "--n", 0)
    assert rc == 2 and "--n" in err


def test_preprocess_without_a_gl_backend_says_what_to_install(kubik, tmp_path, monkeypatch):
    from kubik_core.recon3d.data import render

    monkeypatch.setattr(render, "gl_unavailable_reason", lambda: "no OpenGL backend: install Debian's libosmesa6")
    trimesh.creation.box().export(tmp_path / "box.obj")
    rc, _, err = kubik("3d", "preprocess", tmp_path, tmp_path / "out", "--views", 2)
    assert rc == 2 and "libosmesa6" in err and "--views 0" in err
    assert not (tmp_path / "out" / "box").exists()
