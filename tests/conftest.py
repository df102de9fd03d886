"""Shared test fixtures.

``pack`` loads the repository the way ComfyUI loads a custom node pack: a copy of the folder
under another name, imported through its ``__init__.py`` with no ComfyUI on the path.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "Kubik-Pack Copy"  # a folder name that is not a valid identifier, as users' often are
_IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "out", "__pycache__", "*.pyc",
                                 ".pytest_cache", "*.egg-info", ".gl", ".whl", ".devcarry")


def load_pack(parent: Path, name: str = PACK_NAME):
    """Copy the repository to ``parent/name`` and import it as ComfyUI's loader does."""
    target = parent / name
    if not target.exists():
        shutil.copytree(REPO, target, ignore=_IGNORE)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, target / "__init__.py",
                                                  submodule_search_locations=[str(target)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack(tmp_path_factory):
    """The pack module, loaded from a renamed copy (NODE_CLASS_MAPPINGS, WEB_DIRECTORY...)."""
    return load_pack(tmp_path_factory.mktemp("custom_nodes"))


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
