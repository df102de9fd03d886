"""Hostile textual-inversion embedding files: one real file per case, each with its exact
recorded problem. The scan finishes, the good files beside them are still proposed, and no
pickle is ever unpickled."""
from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.loras.embeddings import read_embedding, recommend_embeddings, scan_embeddings
from kubik_testing.embedding_files import write_embedding


def safetensors_bytes(header, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _tensor(shape, dtype="F16"):
    size = 2
    for d in shape:
        size *= d
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [0, size]}, bytes(size)


class _Payload:
    """Unpickling this would create the marker file: the scan must never do it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


CASES = {
    "empty.safetensors": (b"", "truncated safetensors file (0 bytes, no header length)"),
    "notjson.safetensors": (safetensors_bytes(b"{nope"), "unreadable header: not valid JSON (Expecting "
                            "property name enclosed in double quotes: line 1 column 2 (char 1))"),
    "nan.safetensors": (safetensors_bytes(b'{"__metadata__": {"a": NaN}}'),
                        "unreadable header: NaN is not a JSON number (only finite numbers are accepted)"),
    "deep.safetensors": (safetensors_bytes(("[" * 100 + "]" * 100).encode()),
                         "unreadable header: JSON is nested 100 levels deep (limit 64)"),
    "dims.safetensors": (safetensors_bytes({"emb_params": {"dtype": "F32", "shape": [1] * 20,
                                                           "data_offsets": [0, 4]}}, bytes(4)),
                         "tensor 'emb_params' has a malformed header entry (20 dimensions, more than 16)"),
    "claims_gigabytes.safetensors": (
        safetensors_bytes({"emb_params": {"dtype": "F32", "shape": [100000, 768],
                                          "data_offsets": [0, 100000 * 768 * 4]}}),
        "tensor data ends at byte 307200096 but the file has 96 bytes: the file is truncated"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_embeddings")
    for name, (raw, _problem) in CASES.items():
        (root / name).write_bytes(raw)
    header, data = _tensor((2, 2048))
    (root / "wide.safetensors").write_bytes(safetensors_bytes({"w": header}, data))
    header, data = _tensor((200, 768))
    (root / "long.safetensors").write_bytes(safetensors_bytes({"emb_params": header}, data))
    l_header, l_data = _tensor((2, 768))
    x_header, _ = _tensor((2, 1024))
    x_header["data_offsets"] = [len(l_data), len(l_data) + 2 * 2 * 1024]
    (root / "mixed.safetensors").write_bytes(safetensors_bytes({"a": l_header, "b": x_header},
                                                               l_data + bytes(4096)))
    header, data = _tensor((2, 1280))
    (root / "gonly.safetensors").write_bytes(safetensors_bytes({"clip_g": header}, data))
    write_embedding(root / "liar.safetensors", "sdxl", civitai={"baseModel": "SD 1.5"})
    write_embedding(root / "badjson.safetensors", "sd1")
    (root / "badjson.civitai.info").write_text("{not json", encoding="utf-8")
    write_embedding(root / "my negative.safetensors", "sd1")
    marker = root.parent / "unpickled_marker"
    (root / "evil_negative.pt").write_bytes(pickle.dumps(_Payload(marker)))
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.safetensors")
    (root / "loop").mkdir()
    (root / "loop" / "again").symlink_to(root, target_is_directory=True)
    write_embedding(root / "EasyNegative.safetensors", "sd1")
    return root, marker


@pytest.fixture(scope="module")
def scanned(hostile):
    root, _marker = hostile
    return {e.name: e for e in scan_embeddings([root]).entries}


@pytest.mark.timeout(60)
def test_each_broken_header_is_its_own_recorded_problem(scanned):
    for name, (_raw, problem) in CASES.items():
        assert not scanned[name].readable and scanned[name].problems == [problem], name


def test_shapes_that_are_no_embedding(scanned):
    assert scanned["wide.safetensors"].problems == [
        "no tensor of 768, 1024 or 1280 vectors (w [2, 2048]): not a textual-inversion embedding "
        "ComfyUI can load"]
    assert scanned["long.safetensors"].problems == [
        "200 vectors: more than CLIP's 75-token window; it would push the rest of the prompt into "
        "another chunk"]
    assert scanned["mixed.safetensors"].problems == [
        "tensors of several widths without clip_l/clip_g names: base unknown"]
    assert scanned["gonly.safetensors"].problems == [
        "only a clip_g tensor: SDXL's clip_l encoder gets nothing from it"]
    assert scanned["liar.safetensors"].problems == [
        "the sidecar says SD 1.x but the tensors are SDXL; the tensors win"]
    assert scanned["liar.safetensors"].base == "sdxl"


def test_sidecars_names_pickles_fifos_and_loops(hostile, scanned):
    _root, marker = hostile
    assert any("badjson.civitai.info" in p for p in scanned["badjson.safetensors"].problems)
    assert scanned["my negative.safetensors"].problems == [
        "the name has a space: ComfyUI's embedding:name stops at the space and cannot call it; "
        "rename the file without spaces"]
    evil = scanned["evil_negative.pt"]
    assert evil.format == "pickle" and not evil.readable and not marker.exists()
    assert "fifo.safetensors" not in scanned
    assert not any(name.startswith("loop/") for name in scanned)  # the loop leads back: seen once


def test_the_recommender_skips_them_with_reasons_and_keeps_the_good_file(scanned):
    advice = recommend_embeddings(scanned.values(), None, "sd15", max_negative=8)
    assert advice.negative_text == "embedding:EasyNegative"
    reasons = {p.name: p.reason for p in advice.skipped}
    assert reasons["evil_negative.pt"] == ("pickle-based file: not read, so not proposed (convert it to "
                                           ".safetensors)")
    assert reasons["my negative.safetensors"] == "its name has a space, which ComfyUI's embedding:name cannot call"
    assert reasons["long.safetensors"] == "200 vectors, more than CLIP's 75-token window"
    assert reasons["empty.safetensors"].startswith("unreadable: truncated safetensors file")
    assert reasons["wide.safetensors"].startswith("base architecture unknown")


_DIMS = st.lists(st.sampled_from([0, 1, 2, 75, 76, 768, 1024, 1280, 2048]), min_size=0, max_size=3)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(tensors=st.dictionaries(st.sampled_from(["clip_l", "clip_g", "emb_params", "string_to_param.*", "x"]),
                               _DIMS, max_size=4),
       junk=st.binary(max_size=16))
def test_fuzz_any_header_layout_reads_without_raising(tmp_path_factory, tensors, junk):
    """Any set of tensor names and shapes (claimed sizes need not match the data): the reader
    records problems and gives a known base, never raises."""
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    header, offset = {}, 0
    for key, shape in tensors.items():
        size = 2
        for d in shape:
            size *= d
        header[key] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    path = folder / "f.safetensors"
    path.write_bytes(safetensors_bytes(header, junk))
    entry = read_embedding(path, "f.safetensors", path.stat().st_size, {"f.safetensors"})
    assert entry.base in ("sd1", "sd2", "sdxl", "unknown")
    assert entry.readable or entry.problems
    recommend_embeddings([entry], None, "sdxl")
