"""The bridge widens ComfyUI's core `classifiers` folder to .safetensors without losing its paths.

A stand-in ``folder_paths`` module with ComfyUI 0.8.0's layout (folder_paths.py:49: paths plus
the extension set {""}) replaces the real one, which cannot be imported without a ComfyUI tree.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest


@pytest.fixture
def folder_paths(tmp_path, monkeypatch):
    core, extra = tmp_path / "models" / "classifiers", tmp_path / "extra"
    for folder in (core, extra):
        folder.mkdir(parents=True)
    (core / "plants.safetensors").write_bytes(b"x")
    (core / "legacy").write_bytes(b"x")            # extension-less: what core listed before
    (extra / "birds.safetensors").write_bytes(b"x")
    (extra / "notes.txt").write_text("ignored")

    module = types.ModuleType("folder_paths")
    module.folder_names_and_paths = {"classifiers": ([str(core), str(extra)], {""})}
    module.filename_list_cache = {"classifiers": (["legacy"], {}, 0.0)}

    def get_filename_list(name):
        paths, exts = module.folder_names_and_paths[name]
        found = []
        for root in paths:
            for file in sorted(p for p in Path(root).rglob("*") if p.is_file()):
                if not exts or file.suffix in exts:
                    found.append(file.relative_to(root).as_posix())
        return found

    def get_full_path(name, filename):
        for root in module.folder_names_and_paths[name][0]:
            candidate = Path(root) / filename
            if candidate.is_file():
                return str(candidate)
        return None

    module.get_filename_list = get_filename_list
    module.get_full_path = get_full_path
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    return module


def test_classifiers_folder_is_widened_once(pack, folder_paths):
    bridge = sys.modules[f"{pack.__name__}.nodes.comfy_bridge"]
    assert bridge.CLASSIFIERS.names() == ["birds.safetensors", "kubik_digits_demo.safetensors",
                                         "plants.safetensors"]  # the pack's bundled demo model too
    paths, exts = folder_paths.folder_names_and_paths["classifiers"]
    assert len(paths) == 3 and paths[2] == bridge.CLASSIFIERS.bundled_dir and exts == {"", ".safetensors"}
    assert "classifiers" not in folder_paths.filename_list_cache  # stale listing dropped
    bridge.CLASSIFIERS.register()
    assert folder_paths.folder_names_and_paths["classifiers"][1] == {"", ".safetensors"}
    assert bridge.CLASSIFIERS.path("birds.safetensors").endswith("extra/birds.safetensors")
    assert bridge.CLASSIFIERS.path("missing.safetensors") is None
