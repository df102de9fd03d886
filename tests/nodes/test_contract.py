"""Every node class passes ComfyUI's V1 contract, checked on the pack as ComfyUI loads it."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubik_testing.pack import REPO

CORE_TYPES = set()
for _sig in json.loads((REPO / "tests" / "kubik_testing" / "core_nodes.json").read_text())["nodes"].values():
    CORE_TYPES.update(s["type"] for s in _sig["inputs"].values())
    CORE_TYPES.update(o for o in _sig["outputs"] if isinstance(o, str))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def _node_ids():
    """The node ids, read at collection (before any fixture exists) from a pack copy that is
    removed when the test process ends; every earlier run had left a 15 MB copy in /tmp."""
    import atexit
    import shutil
    import tempfile

    from kubik_testing.pack import load_pack
    parent = Path(tempfile.mkdtemp(prefix="kubik-ids-"))
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    return sorted(load_pack(parent).NODE_CLASS_MAPPINGS)


NODE_IDS = _node_ids()


def test_pack_exports(pack):
    assert pack.NODE_CLASS_MAPPINGS, "the pack registers no nodes"
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    web = Path(pack.__file__).parent / pack.WEB_DIRECTORY
    assert web.is_dir() and list(web.glob("*.js")), "WEB_DIRECTORY must exist and hold the JS extensions"


def test_import_is_light():
    """Importing the pack loads no ComfyUI module and none of the heavy optional libraries."""
    code = (
        "import sys, importlib.util, pathlib\n"
        f"root = pathlib.Path({str(REPO)!r})\n"
        "spec = importlib.util.spec_from_file_location('Pack Light', root / '__init__.py',"
        " submodule_search_locations=[str(root)])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['Pack Light'] = m; spec.loader.exec_module(m)\n"
        "heavy = {'comfy', 'folder_paths', 'server', 'timm', 'trimesh', 'huggingface_hub', 'pyrender', 'warp'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_node_contract(node_id, node_classes, pack):
    cls = node_classes[node_id]
    assert node_id.startswith("Kubik"), "node ids are prefixed Kubik to avoid clashes"
    assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("Kubik ")
    assert cls.CATEGORY.startswith("KubikAI/")
    assert isinstance(getattr(cls, "DESCRIPTION", None), str) and cls.DESCRIPTION.strip()

    types = cls.INPUT_TYPES()
    assert isinstance(types, dict) and set(types) <= {"required", "optional", "hidden"}
    declared = {}
    for category, inputs in types.items():
        for name, spec in inputs.items():
            declared[name] = category
            if category == "hidden":
                continue
            assert isinstance(spec, tuple) and 1 <= len(spec) <= 2, f"{name}: spec must be (TYPE, options)"
            kind, options = spec[0], (spec[1] if len(spec) == 2 else {})
            assert options.get("tooltip"), f"input {name!r} has no tooltip"
            if isinstance(kind, list):
                # may be empty: a file list (models, images) outside ComfyUI has no folder to list
                assert all(isinstance(o, str) for o in kind), f"{name}: combo choices must be strings"
                if "default" in options:
                    assert options["default"] in kind, f"{name}: default not among the choices"
            else:
                assert isinstance(kind, str) and kind, f"{name}: type must be a string or a list"
                _assert_known_type(kind, name)
                if kind in ("INT", "FLOAT") and "default" in options:
                    assert options.get("min", float("-inf")) <= options["default"] <= options.get("max", float("inf"))

    returns = cls.RETURN_TYPES
    assert isinstance(returns, tuple)
    for kind in returns:
        if isinstance(kind, str):
            _assert_known_type(kind, "output")
    names = getattr(cls, "RETURN_NAMES", returns)
    tips = getattr(cls, "OUTPUT_TOOLTIPS", None)
    assert len(names) == len(returns), "RETURN_NAMES and RETURN_TYPES differ in length"
    assert tips is not None and len(tips) == len(returns) and all(isinstance(t, str) and t for t in tips), \
        "every output needs a tooltip (OUTPUT_TOOLTIPS)"
    assert returns or getattr(cls, "OUTPUT_NODE", False), "a node with no outputs must be an OUTPUT_NODE"

    function = getattr(cls, cls.FUNCTION)
    params = inspect.signature(function).parameters
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params.values()), \
        f"{cls.FUNCTION} must not take *args/**kwargs"
    accepted = set(params) - {"self"}
    assert accepted == set(declared), f"{cls.FUNCTION} accepts {sorted(accepted)}, declared {sorted(declared)}"
    for name, category in declared.items():
        if category != "required":
            assert params[name].default is not inspect.Parameter.empty, \
                f"{category} input {name!r} needs a default: ComfyUI omits it when unconnected"


def _assert_known_type(kind: str, where: str) -> None:
    for part in kind.split(","):
        part = part.strip()
        assert part in CORE_TYPES or part in WIDGET_TYPES or part == "*" or part.startswith("KUBIK_"), \
            f"{where}: custom type {part!r} must be prefixed KUBIK_"
