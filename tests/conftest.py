"""Shared test fixtures.

``pack`` loads the repository the way ComfyUI loads a custom node pack: a copy of the folder
under another name, imported through its ``__init__.py`` with no ComfyUI on the path.
Test modules import shared helpers from the ``kubik_testing`` package, not from this file
(sub-folders have conftest.py files of their own).
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from kubik_testing.pack import load_pack

_OWN_CACHE: str | None = None


def pytest_configure(config):
    """The pack's caches (LoRA index, CPU profile, file hashes) go to a folder of this run, not
    to the user's ~/.cache/kubik; subprocesses inherit it. A caller's KUBIK_CACHE_DIR wins.
    So do the caches libraries write while tests run (matplotlib's font list, Mesa's shaders,
    Hypothesis' folder, which would otherwise land in the home folder or the repository)."""
    global _OWN_CACHE
    _OWN_CACHE = tempfile.mkdtemp(prefix="kubik-test-cache-")
    os.environ.setdefault("KUBIK_CACHE_DIR", _OWN_CACHE)
    for variable, folder in (("MPLCONFIGDIR", "matplotlib"), ("MESA_SHADER_CACHE_DIR", "mesa"),
                             ("HYPOTHESIS_STORAGE_DIRECTORY", "hypothesis")):
        os.environ.setdefault(variable, os.path.join(_OWN_CACHE, folder))


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def pack(tmp_path_factory):
    """The pack module, loaded from a renamed copy (NODE_CLASS_MAPPINGS, WEB_DIRECTORY...)."""
    return load_pack(tmp_path_factory.mktemp("custom_nodes"))


@pytest.fixture(scope="session")
def plain_comfy_server(tmp_path_factory):
    """A real ComfyUI (COMFYUI_DIR) with the pack installed and no model files, shared by the
    modules that only ask it things or queue graphs that need no file (each start costs ~7 s of
    this machine's two cores). Modules whose server needs files, settings or an environment of
    its own start their own. Skipped without COMFYUI_DIR."""
    from pathlib import Path

    from kubik_testing.comfy_server import ComfyServer
    from kubik_testing.pack import REPO

    comfyui_dir = os.environ.get("COMFYUI_DIR")
    if not comfyui_dir or not (Path(comfyui_dir) / "main.py").exists():
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the real-server tests are skipped")
    server = ComfyServer(Path(comfyui_dir), REPO, tmp_path_factory.mktemp("comfyui"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def node_classes(pack):
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture
def run_node(node_classes):
    """Run a node by id with keyword inputs, as ComfyUI's executor calls FUNCTION."""
    def _run(node_id: str, **inputs):
        cls = node_classes[node_id]
        return getattr(cls(), cls.FUNCTION)(**inputs)
    return _run
