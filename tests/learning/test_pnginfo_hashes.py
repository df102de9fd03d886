"""Model hash and Lora hashes in the A1111 ``parameters`` Kubik Save Image writes, as CivitAI
links them: the hashes, their cache and the text (the node itself is tested in
tests/nodes/test_save_image_hashes.py).

The expected values are computed independently (kubik_testing.hash_files), straight from the
definitions A1111 uses. Files are real safetensors files written here.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest

from kubik_core.learning.model_hashes import CACHE_FILE_NAME, HashCache, add_resource_hashes, sha256_of
from kubik_core.learning.pnginfo import a1111_parameters
from kubik_testing.hash_files import checkpoint_file, independent_autov2, independent_autov3, lora_file


def test_lora_hash_is_the_tensor_data_hash_and_ignores_metadata(tmp_path):
    first = lora_file(tmp_path / "a.safetensors", title="castle")
    second = lora_file(tmp_path / "b.safetensors", title="a much longer title that changes the header")
    assert first.read_bytes() != second.read_bytes()
    assert sha256_of(first, "tensors")[:12] == independent_autov3(first) == independent_autov3(second)
    assert sha256_of(second, "tensors")[:12] == independent_autov3(second)
    assert sha256_of(first, "file")[:10] == independent_autov2(first) != independent_autov2(second)


def test_other_lora_files_hash_the_whole_file_as_a1111_does(tmp_path):
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(b"\x80\x02not a safetensors file" * 100)
    assert sha256_of(legacy, "tensors") == hashlib.sha256(legacy.read_bytes()).hexdigest()


@pytest.mark.timeout(60)  # opening the FIFO for reading would wait for a writer forever
def test_broken_and_hostile_files_give_no_hash_and_no_error(tmp_path):
    cache = HashCache(tmp_path / "cache")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert cache.get(truncated, "tensors") == ""
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    assert cache.get(short, "tensors") == ""
    assert cache.get(tmp_path / "missing.safetensors", "tensors") == ""
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    assert cache.get(fifo, "tensors") == ""                  # refused, never waits for a writer


def test_cached_hashes_are_reused_until_the_file_changes(tmp_path):
    lora = lora_file(tmp_path / "loras" / "castle.safetensors")
    expected = independent_autov3(lora)
    cache = HashCache(tmp_path / "cache")
    assert cache.get(lora, "tensors")[:12] == expected
    stat = lora.stat()
    data = bytearray(lora.read_bytes())
    data[-1] ^= 0xFF                                          # same size, same mtime: not read again
    lora.write_bytes(bytes(data))
    os.utime(lora, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.get(lora, "tensors")[:12] == expected
    reopened = HashCache(tmp_path / "cache")                  # the cache file holds it across runs
    assert reopened.get(lora, "tensors")[:12] == expected
    os.utime(lora, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert reopened.get(lora, "tensors")[:12] == independent_autov3(lora) != expected


def test_large_files_are_hashed_in_the_background(tmp_path):
    checkpoint = checkpoint_file(tmp_path / "model.safetensors")
    cache = HashCache(tmp_path / "cache")
    assert cache.get(checkpoint, "file", inline_bytes=0) == ""     # never waited for
    assert cache.wait(timeout=60)
    assert cache.get(checkpoint, "file", inline_bytes=0)[:10] == independent_autov2(checkpoint)


@pytest.mark.parametrize("content", [
    b"[" * 10000 + b"]" * 10000, b"{not json", b'{"version": 1, "files": 7}',
    json.dumps({"version": 1, "files": {"relative/path": {"size": 1, "mtime_ns": 1, "file": "0" * 64},
                                        "/abs": {"size": -1, "mtime_ns": 1, "file": "0" * 64},
                                        "/abs2": {"size": 1, "mtime_ns": 1, "file": "zz"}}}).encode(),
])
def test_a_damaged_cache_file_is_ignored(tmp_path, content):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CACHE_FILE_NAME).write_bytes(content)
    lora = lora_file(tmp_path / "castle.safetensors")
    assert HashCache(tmp_path / "cache").get(lora, "tensors")[:12] == independent_autov3(lora)
    saved = json.loads((tmp_path / "cache" / CACHE_FILE_NAME).read_text())
    assert list(saved["files"]) == [str(lora)]


def test_parameters_text_has_model_hash_and_autov3_lora_hashes():
    plan = {"steps": 30, "sampler_name": "euler", "cfg": 7.0, "width": 1024, "height": 1024}
    text = a1111_parameters("a castle", "blurry", plan, seed=3, model_name="xl/juggernaut.safetensors",
                            loras=[{"name": "xl/castle.safetensors", "strength_model": 0.8,
                                    "autov3": "0123456789ab", "autov2": "ffffffffff"},
                                   {"name": "old.safetensors", "strength_model": 1.0, "autov2": "abcdef0123"}],
                            model_hash="9f1c2d3e4b")
    last = text.splitlines()[-1]
    assert ", Model hash: 9f1c2d3e4b, Model: juggernaut, " in last
    assert 'Lora hashes: "castle: 0123456789ab, old: abcdef0123"' in last
    assert "Model hash" not in a1111_parameters("a castle", plan=plan, model_name="x.safetensors")


def test_add_resource_hashes_fills_what_it_finds(tmp_path):
    lora = lora_file(tmp_path / "loras" / "castle.safetensors")
    checkpoint = checkpoint_file(tmp_path / "checkpoints" / "model.safetensors")
    loras = [{"name": "castle.safetensors"}, {"name": "gone.safetensors", "autov2": "abcdef0123"}]
    find = lambda name: str(tmp_path / "loras" / name) if (tmp_path / "loras" / name).exists() else None
    model_hash = add_resource_hashes(loras, str(checkpoint), find, HashCache(tmp_path / "cache"))
    assert model_hash == independent_autov2(checkpoint)
    assert loras == [{"name": "castle.safetensors", "autov3": independent_autov3(lora)},
                     {"name": "gone.safetensors", "autov2": "abcdef0123"}]
