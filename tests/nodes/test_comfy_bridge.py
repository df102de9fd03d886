"""nodes/comfy_bridge.py outside ComfyUI: the model cache that stands in for ComfyUI's memory
manager, and what happens when a ComfyUI module does not import.

Real files written by the tests; the loader is a counting function (what it returns does not
matter to the cache).
"""
from __future__ import annotations

import logging
import os
import sys
import types

import pytest


@pytest.fixture
def bridge(pack):
    return sys.modules[f"{pack.__name__}.nodes.comfy_bridge"]


class CountingLoader:
    def __init__(self):
        self.calls = []

    def __call__(self, path, device):
        self.calls.append((os.path.basename(path), str(device)))
        with open(path, "rb") as file:
            return {"bytes": file.read(), "device": str(device)}


def test_an_unchanged_file_is_loaded_once_per_device_and_kind(bridge, tmp_path):
    cache, load = bridge.ModelCache(capacity=3), CountingLoader()
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"first")
    first = cache.get("classifiers", str(path), "cpu", load)
    assert cache.get("classifiers", str(path), "cpu", load) is first
    assert cache.get("classifiers", str(tmp_path / "." / "a.safetensors"), "cpu", load) is first
    assert cache.get("classifiers", str(path), "meta", load)["device"] == "meta"
    assert cache.get("kubik3d", str(path), "cpu", load) is not first    # another kind of model
    assert load.calls == [("a.safetensors", "cpu"), ("a.safetensors", "meta"), ("a.safetensors", "cpu")]


def test_a_file_written_again_is_read_again(bridge, tmp_path):
    cache, load = bridge.ModelCache(), CountingLoader()
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"first")
    assert cache.get("kubik3d", str(path), "cpu", load)["bytes"] == b"first"
    path.write_bytes(b"second, longer")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache.get("kubik3d", str(path), "cpu", load)["bytes"] == b"second, longer"
    assert len(load.calls) == 2


def test_the_cache_keeps_the_most_recently_used_models_only(bridge, tmp_path):
    cache, load = bridge.ModelCache(capacity=2), CountingLoader()
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.safetensors")
        paths[-1].write_bytes(name.encode())
    a = cache.get("kubik3d", str(paths[0]), "cpu", load)
    cache.get("kubik3d", str(paths[1]), "cpu", load)
    assert cache.get("kubik3d", str(paths[0]), "cpu", load) is a     # a is now the most recent
    cache.get("kubik3d", str(paths[2]), "cpu", load)                  # b goes
    assert len(cache) == 2
    assert cache.get("kubik3d", str(paths[0]), "cpu", load) is a
    cache.get("kubik3d", str(paths[1]), "cpu", load)
    assert [name for name, _ in load.calls] == ["a.safetensors", "b.safetensors", "c.safetensors",
                                                "b.safetensors"]


def test_a_missing_file_is_reported_by_the_loader_and_not_cached(bridge, tmp_path):
    cache = bridge.ModelCache()

    def load(path, device):
        raise FileNotFoundError(f"no model file {os.path.basename(path)}")

    with pytest.raises(FileNotFoundError, match="no model file gone.safetensors"):
        cache.get("classifiers", str(tmp_path / "gone.safetensors"), "cpu", load)
    assert len(cache) == 0


def test_outside_comfyui_models_load_on_the_cpu_through_the_cache(bridge, tmp_path, monkeypatch):
    monkeypatch.setattr(bridge, "MODEL_CACHE", bridge.ModelCache())
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"weights")
    load = CountingLoader()
    first = bridge.load_model_file("kubik3d", str(path), load)
    again = bridge.load_model_file("kubik3d", str(path), load, cpu=True)
    assert first.patcher is None and again.ready() is first.ready() is first.model
    assert load.calls == [("m.safetensors", "cpu")]


def test_a_comfyui_module_that_fails_to_import_inside_comfyui_is_logged_once(bridge, monkeypatch, caplog):
    monkeypatch.setattr(bridge, "_IMPORT_FAILURES_LOGGED", set())
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    with caplog.at_level(logging.WARNING):
        assert bridge.sampler_names() == bridge.FALLBACK_SAMPLERS   # plain python: silent
    assert caplog.records == []

    # Inside ComfyUI (its main.py has imported folder_paths), comfy.samplers failing is logged.
    monkeypatch.setitem(sys.modules, "folder_paths", types.ModuleType("folder_paths"))
    monkeypatch.setitem(sys.modules, "comfy.samplers", None)      # its import fails
    with caplog.at_level(logging.WARNING):
        assert bridge.sampler_names() == bridge.FALLBACK_SAMPLERS
        assert bridge.scheduler_names() == bridge.FALLBACK_SCHEDULERS
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    message = caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.WARNING
    assert "comfy.samplers could not be imported (ModuleNotFoundError: " in message
    assert "stand-in" in message
