"""Hostile input to `kubik 3d preprocess` at scale: bad Ray addresses and options (one line, exit 2,
before any cluster starts), manifests with paths outside their folder and garbage lines (each one
failure in the report, never the end of the run), damaged shard folders (one clear error)."""
from __future__ import annotations

import io
import json
import os
import socket
import sys
import tarfile

import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.recon3d.data.preprocess import MAX_MANIFEST_LINE, PreprocessConfig, iter_inputs, preprocess_folder
from kubik_core.recon3d.data.samples import SampleConfig
from kubik_core.recon3d.data.shapes import ShapeSet

CONFIG = PreprocessConfig(samples=SampleConfig(surface=256, near=256, uniform=256), render=None, device="cpu")


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens there


def test_bad_ray_options_are_one_line_before_any_work(kubik, tmp_path, closed_port):
    trimesh.creation.box().export(tmp_path / "box.obj")
    cases = {
        ("--ray=not an address",):
            "--ray 'not an address': not a cluster address; give HOST:PORT (what `ray start --head` prints, port 6379 "
            "by default), ray://HOST:PORT for Ray Client, auto, or nothing to start a local cluster",
        ("--ray=10.0.0.1:99999",): "--ray '10.0.0.1:99999': not a cluster address;",
        ("--ray=ray://;rm -rf:1",): "--ray 'ray://;rm -rf:1': not a cluster address;",
        (f"--ray=127.0.0.1:{closed_port}",):
            f"--ray 127.0.0.1:{closed_port}: no Ray cluster answers there (Connection refused); start one with "
            "`ray start --head` on that machine, or leave ADDRESS out for a local cluster",
        ("--ray-cpus", "2"): "--ray-cpus and --ray-retries apply to a Ray run; add --ray (or drop them)",
        ("--workers", "2", "--ray"): "--workers is for the local run; with --ray the cluster's CPUs set how many",
        ("--ray=127.0.0.1:6379", "--ray-cpus", "2"):
            "--ray-cpus sizes a local cluster; a cluster at an address has its own CPUs",
        ("--ray", "--device", "cuda"): "--device cuda: with --ray each mesh runs on one CPU and no GPU; pass "
                                       "--device cpu (or leave --ray out to use the GPU here)",
        ("--ray", "--ray-cpus", "0"): "--ray-cpus must be from 1 to 256, got 0",
        ("--ray", "--ray-retries", "-1"): "--ray-retries must be from 0 to 100, got -1",
        ("--shard-size", "0", "--shards", tmp_path / "s"): "--shard-size must be at least 1, got 0",
        ("--shards", tmp_path / "box.obj"): f"--shards {tmp_path / 'box.obj'}: is a file, not a folder; choose a folder",
    }
    for extra, message in cases.items():
        rc, err = kubik("3d", "preprocess", tmp_path / "box.obj", tmp_path / "out", "--views", "0", *extra)
        assert rc == 2 and err.startswith(f"kubik 3d: error: {message}") and "\n" not in err, (extra, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "s").exists()


def test_ray_missing_is_one_line_naming_the_extra(kubik, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    trimesh.creation.box().export(tmp_path / "box.obj")
    rc, err = kubik("3d", "preprocess", tmp_path / "box.obj", tmp_path / "out", "--views", "0", "--ray")
    assert (rc, err) == (2, 'kubik 3d: error: --ray needs Ray, which is not installed: pip install "kubikai[ray]" '
                            '(or pip install "ray>=2.40")')


def test_manifest_lines_outside_the_folder_or_garbage_are_failures_not_the_end(tmp_path):
    base = tmp_path / "set"
    (base / "sub").mkdir(parents=True)
    trimesh.creation.box().export(base / "sub" / "box.obj")
    trimesh.creation.icosphere(subdivisions=1).export(base / "ball.obj")
    trimesh.creation.box().export(tmp_path / "outside.obj")
    os.symlink(tmp_path / "outside.obj", base / "link.obj")
    lines = [b"# meshes of the set", b"", b"sub/box.obj", b"../outside.obj", str(tmp_path / "outside.obj").encode(),
             b"https://example.com/a.obj", b"\xff\xfe not utf-8", b"a" * (MAX_MANIFEST_LINE + 10), b"tab\there.obj",
             b"link.obj", b".", str(base / "ball.obj").encode(), b"missing.obj"]
    (base / "list.txt").write_bytes(b"\n".join(lines) + b"\n")
    report = preprocess_folder(base / "list.txt", tmp_path / "out", CONFIG)
    assert report["meshes"] == 11 and report["done"] == 2
    errors = {f["source"]: f["error"] for f in report["failed"]}
    where = f"the manifest's folder {base.resolve()}; list only meshes inside it"
    assert errors == {
        "list.txt line 4": f"../outside.obj: outside {where}",
        "list.txt line 5": f"{tmp_path / 'outside.obj'}: outside {where}",
        "list.txt line 6": "https://example.com/a.obj: URLs are not fetched; download the meshes into the manifest's "
                           "folder and list their paths",
        "list.txt line 7": "not UTF-8 text; list one mesh path per line",
        "list.txt line 8": f"longer than {MAX_MANIFEST_LINE} bytes; list one mesh path per line",
        "list.txt line 9": "holds control characters; list one mesh path per line",
        "list.txt line 10": f"link.obj: outside {where}",
        "list.txt line 11": f".: outside {where}",
        str(base.resolve() / "missing.obj"): "no such file",  # a mesh path that names nothing: its mesh failed
    }
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [m["id"] for m in manifest["meshes"]] == ["ball", "sub__box"]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                          st.sampled_from([b"../x.obj", b"/etc/passwd", b"a/../../b.obj", b"ok.obj", b"#c", b"\x00"])),
                max_size=8))
def test_fuzz_manifest_lines_name_a_mesh_inside_the_folder_or_an_error(tmp_path_factory, lines):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "list.txt").write_bytes(b"\n".join(lines))
    for item in iter_inputs(base / "list.txt"):
        if item.error is None:
            assert item.path.is_relative_to(base.resolve()) and item.path != base.resolve()
            assert item.id and "/" not in item.id and item.id not in (".", "..")
        else:
            assert item.path is None and "\n" not in item.error and item.source.startswith("list.txt line ")


def _shard_folder(root, index: dict, members: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "shards.json").write_text(json.dumps(index))
    with tarfile.open(root / "shard-000000.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_damaged_shard_folders_are_one_clear_error(tmp_path):
    good = {"format_version": 1, "dataset": "d", "shards": [{"file": "shard-000000.tar", "count": 1}]}
    meta = json.dumps({"views": None}).encode()
    cases = [
        ({**good, "shards": [{"file": "../../etc/x.tar"}]}, {},
         "shards.json: needs a dataset name and a list of shards with plain file names; write the shards again"),
        ({**good, "dataset": "../up"}, {}, "shards.json: needs a dataset name and a list of shards"),
        (good, {"k/../../x.meta.json": meta}, "member 'k/../../x.meta.json' is not a sample file (KEY.NAME)"),
        (good, {"k.meta.json": meta}, "sample k lacks its meta.json or samples.npz; write the shards again"),
        (good, {"k.meta.json": b"[" * 100, "k.samples.npz": b"x"}, "k: meta.json cannot be read"),
        (good, {"k.meta.json": meta, "k.samples.npz": b"not a zip"},
         "k's samples.npz: not a usable samples file (damaged, or not written by `kubik 3d preprocess`)"),
        (good, {"k.meta.json": json.dumps({"views": {"rgba": ["view_000.png"], "camera_to_world": []}}).encode(),
                "k.samples.npz": b"x"}, "its views must list renders that are in the sample, and cameras"),
    ]
    for number, (index, members, message) in enumerate(cases):
        root = tmp_path / str(number)
        _shard_folder(root, index, members)
        with pytest.raises(ValueError) as caught:
            ShapeSet.load(root, split="all")
        assert message in str(caught.value) and "\n" not in str(caught.value), (number, str(caught.value))
    (tmp_path / "0" / "shards.json").write_text(json.dumps(good))
    (tmp_path / "0" / "shard-000000.tar").write_bytes(b"\x00" * 100)  # truncated
    with pytest.raises(ValueError, match="not a readable tar shard"):
        ShapeSet.load(tmp_path / "0", split="all")
