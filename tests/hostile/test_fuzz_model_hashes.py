"""Fuzzing what Kubik Save Image's hash cache reads: its JSON file and the model files it hashes.

The cache file lives in a user folder another program may write, and model files may be
damaged or crafted. Whatever the bytes, the cache answers a 64-digit hex SHA-256 or "" (no
hash), never an exception, and what it writes back is valid JSON with only valid entries.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubik_core.learning.model_hashes import CACHE_FILE_NAME, HashCache

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HEX = set("0123456789abcdef")

json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                | st.text(max_size=70) | st.sampled_from(["0" * 64, "f" * 64, "/abs/path", "NaN"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
cache_texts = (st.binary(max_size=300)
               | json_values.map(lambda v: json.dumps(v).encode())
               | st.dictionaries(st.sampled_from(["/a", "/b", "rel", ""]),
                                 st.fixed_dictionaries({"size": json_scalars, "mtime_ns": json_scalars,
                                                        "file": json_scalars, "tensors": json_scalars}),
                                 max_size=3)
                 .map(lambda files: json.dumps({"version": 1, "files": files}).encode()))


@FUZZ
@given(content=cache_texts)
def test_any_cache_file_is_read_or_ignored(tmp_path_factory, content):
    root = tmp_path_factory.mktemp("cache")
    (root / CACHE_FILE_NAME).write_bytes(content)
    model = root / "m.safetensors"
    model.write_bytes(struct.pack("<Q", 2) + b"{}" + b"tensor bytes")
    cache = HashCache(root)
    assert cache.get(model, "tensors") == hashlib.sha256(b"tensor bytes").hexdigest()
    saved = json.loads((root / CACHE_FILE_NAME).read_text())
    for key, entry in saved["files"].items():
        assert key.startswith("/") and entry["size"] >= 0
        assert all(set(entry[kind]) <= HEX and len(entry[kind]) == 64 for kind in ("file", "tensors")
                   if kind in entry)
    shutil.rmtree(root)


@FUZZ
@given(content=st.binary(max_size=200) | st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=100))
       .map(lambda t: struct.pack("<Q", t[0]) + t[1]))
def test_any_model_file_gives_a_hash_or_none(tmp_path_factory, content):
    root = tmp_path_factory.mktemp("files")
    model = root / "model.safetensors"
    model.write_bytes(content)
    cache = HashCache(root / "cache")
    tensors = cache.get(model, "tensors")
    if len(content) >= 8 and 8 + struct.unpack("<Q", content[:8])[0] <= len(content):
        assert tensors == hashlib.sha256(content[8 + struct.unpack("<Q", content[:8])[0]:]).hexdigest()
    else:
        assert tensors == ""
    assert cache.get(model, "file") == hashlib.sha256(content).hexdigest()
    shutil.rmtree(root)
