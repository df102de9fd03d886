"""Load the repository the way ComfyUI loads a custom node pack.

ComfyUI imports ``custom_nodes/<folder>/__init__.py`` with the folder name as the module name,
whatever that name is; ``load_pack`` does the same with a copy under another name, so relative
imports and the absence of ComfyUI are both exercised.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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
