"""The layering DESIGN.md promises, checked on the source's import graph (nothing is imported).

- No import cycle among the modules of kubik_core/ and nodes/, lazy imports included.
- kubik_core's capability packages depend only downwards: counting every module except the
  command-line and demo faces (``cli.py``, ``cli_*.py``, ``demo.py``, which sit on top and may
  use any capability), the packages form no cycle; and nothing but a face imports a face.
- kubik_core/common imports no capability package; kubik_core never imports nodes/.
- A node module imports no other node module but nodes/comfy_bridge.py; only the entry
  (nodes/__init__.py) and nodes/routes.py may.

Each rule is a function of the graph, tried below on small graphs that break it, so that a
rule which could no longer fail would show.
"""
from __future__ import annotations

import functools
from pathlib import Path

from kubik_testing.import_graph import find_cycle, import_graph

REPO = Path(__file__).resolve().parents[1]
FACE_NAMES = {"cli", "demo", "__main__"}
NODE_ENTRY_MODULES = {"nodes", "nodes.routes"}
NODE_SHARED_MODULES = {"nodes.comfy_bridge"}


@functools.cache
def _graph() -> dict[str, set[str]]:
    return import_graph(REPO, ["kubik_core", "nodes"])


def is_face(module: str) -> bool:
    last = module.rpartition(".")[2]
    return module.startswith("kubik_core.") and (last in FACE_NAMES or last.startswith("cli_"))


def package_of(module: str) -> str:
    """``kubik_core.<cap>`` for a module of a capability, else the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "kubik_core" and len(parts) > 2 else module


def engine_package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """kubik_core package -> packages it imports, leaving out the faces' imports."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if not module.startswith("kubik_core") or is_face(module):
            continue
        mine = package_of(module)
        packages.setdefault(mine, set()).update(
            package_of(t) for t in targets if t.startswith("kubik_core") and package_of(t) != mine)
    return packages


def faces_imported_by_engines(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in graph.items()
                  for target in targets if is_face(target) and not is_face(module))


def common_imports_of_capabilities(graph: dict[str, set[str]]) -> list[str]:
    """What kubik_core/common imports besides itself and kubik_core/__init__ (the version)."""
    return sorted(f"{module} imports {target}" for module, targets in graph.items()
                  if module.startswith("kubik_core.common") for target in targets
                  if target != "kubik_core" and not target.startswith("kubik_core.common"))


def core_imports_of_nodes(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in graph.items()
                  if module.startswith("kubik_core") for target in targets
                  if target.split(".")[0] == "nodes")


def node_modules_importing_each_other(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in graph.items()
                  if module.split(".")[0] == "nodes" and module not in NODE_ENTRY_MODULES
                  for target in targets
                  if target.split(".")[0] == "nodes" and target not in NODE_SHARED_MODULES)


# The rules on the pack's own source.

def test_the_graph_sees_the_whole_pack():
    graph = _graph()
    assert {"kubik_core.cli", "kubik_core.common.atomic", "nodes.comfy_bridge"} <= set(graph)
    # a lazy import inside a function, and a module loaded by name from cli.py's table
    assert "kubik_core.prompting" in graph["kubik_core.params.cli"]
    assert "kubik_core.loras.cli" in graph["kubik_core.cli"]


def test_no_import_cycle():
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_capability_packages_depend_only_downwards():
    graph = _graph()
    cycle = find_cycle(engine_package_graph(graph))
    assert cycle is None, "packages import each other (faces left out): " + " -> ".join(cycle)
    assert faces_imported_by_engines(graph) == []


def test_common_imports_no_capability():
    assert common_imports_of_capabilities(_graph()) == []


def test_kubik_core_never_imports_the_nodes():
    assert core_imports_of_nodes(_graph()) == []


def test_node_modules_import_only_the_bridge():
    assert node_modules_importing_each_other(_graph()) == []


# Each rule fails on a graph that breaks it.

def test_each_rule_finds_what_breaks_it():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]

    layered = {"kubik_core.params.plan": {"kubik_core.common.atomic"},
               "kubik_core.explain.explainer": {"kubik_core.params.plan"},
               "kubik_core.params.cli": {"kubik_core.explain.explainer", "kubik_core.common.commands"}}
    assert find_cycle(engine_package_graph(layered)) is None        # a face may reach up
    assert faces_imported_by_engines(layered) == []
    upward = {**layered, "kubik_core.params.plan": {"kubik_core.explain.explainer"}}
    assert find_cycle(engine_package_graph(upward)) == [
        "kubik_core.explain", "kubik_core.params", "kubik_core.explain"]
    assert faces_imported_by_engines({"kubik_core.loras.demo": {"kubik_core.demo"},
                                      "kubik_core.loras.library": {"kubik_core.loras.cli"}}) == [
        "kubik_core.loras.library imports kubik_core.loras.cli"]

    assert common_imports_of_capabilities({
        "kubik_core.common.http": {"kubik_core", "kubik_core.common.atomic", "kubik_core.hub.errors"},
        "kubik_core.hub.http": {"kubik_core.common.http"}}) == [
        "kubik_core.common.http imports kubik_core.hub.errors"]
    assert core_imports_of_nodes({"kubik_core.loras.library": {"nodes.learning"},
                                  "nodes.loras": {"kubik_core.loras"}}) == [
        "kubik_core.loras.library imports nodes.learning"]
    assert node_modules_importing_each_other({
        "nodes": {"nodes.loras", "nodes.learning"}, "nodes.routes": {"nodes.hub"},
        "nodes.loras": {"nodes.comfy_bridge", "nodes.learning", "kubik_core.loras"}}) == [
        "nodes.loras imports nodes.learning"]


# The graph reader on a small package written for the test.

def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_reader_counts_lazy_relative_and_by_name_imports(tmp_path):
    _write(tmp_path, {
        "core/__init__.py": "",
        "core/cli.py": ('from importlib import import_module\n'
                        'COMMANDS = ("tool.cli", "missing.cli")\n'
                        'def main():\n    for name in COMMANDS:\n        import_module(name)\n'),
        "core/tool/__init__.py": "from .engine import run\n",
        "core/tool/engine.py": "import json\n\ndef run():\n    from ..cli import main\n",
        "core/tool/cli.py": "from . import engine\nimport core.tool.engine\n",
        "core/lazy.py": '_EXPORTS = {"run": ".tool.engine"}\n'
                        'def __getattr__(name):\n    from importlib import import_module\n'
                        '    return import_module(_EXPORTS[name], __name__)\n',
        "core/tables.py": 'NAMES = ("tool.cli",)\n',   # no import_module: a table of words
        "front/__init__.py": "",
        "front/node.py": "try:\n    from ..core.tool.engine import run\nexcept ImportError:\n    pass\n",
    })
    graph = import_graph(tmp_path, ["core", "front"])
    assert graph["core.cli"] == {"core.tool.cli", "core.tool"}       # by name; missing.cli is not ours
    assert graph["core.tool"] == {"core.tool.engine"}
    assert graph["core.tool.engine"] == {"core.cli"}                 # lazy, relative, json left out
    assert graph["core.tool.cli"] == {"core.tool.engine"}
    assert graph["core.lazy"] == {"core.tool.engine", "core.tool"}
    assert graph["core.tables"] == set()
    assert graph["front.node"] == {"core", "core.tool", "core.tool.engine"}
    assert find_cycle(graph) == ["core.cli", "core.tool", "core.tool.engine", "core.cli"]

    (tmp_path / "core/tool/engine.py").write_text("import json\n")
    assert find_cycle(import_graph(tmp_path, ["core", "front"])) is None
