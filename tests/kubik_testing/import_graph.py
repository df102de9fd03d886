"""The pack's import graph, read from the source with ``ast`` (nothing is imported).

``import_graph(root, packages)`` maps every module under the named top-level folders of
``root`` (e.g. ``kubik_core`` and ``nodes``) to the internal modules it imports. It counts what
would run at import time or later:

- ``import a.b`` and ``from a.b import c`` anywhere in the file: at module level, inside
  functions and methods, under ``if``/``try`` (a lazy import is still a dependency);
- relative imports, resolved against the importing module's package (``root`` itself is the
  pack's package, so ``nodes/x.py``'s ``from ..kubik_core.loras import y`` is
  ``kubik_core.loras``);
- ``from package import name`` as an import of ``package.name`` when that is a module,
  otherwise of ``package``;
- the packages entered on the way: importing ``kubik_core.loras.demo`` from ``nodes/x.py``
  runs ``kubik_core/__init__.py`` and ``kubik_core/loras/__init__.py`` first, so those count
  too (a module's own enclosing packages are already being imported, so they do not);
- modules loaded by name: in a file that calls ``import_module``, each string in a module-level
  table (a tuple, list or dict assigned at module level) that names a module, written
  relative to the file's package (``"loras.demo"``, ``".service"``) or in full.

Imports of anything outside the named folders (the standard library, torch ...) are left out.
``find_cycle(graph)`` returns one cycle as a list of modules, first module repeated at the end.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterable

_DOTTED = re.compile(r"^\.*[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name (``kubik_core.loras.demo``; a package by its own name) -> file."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the set of internal modules it imports (see the module docstring)."""
    root = Path(root)
    files = module_files(root, packages)
    return {name: _imports_of(name, path, files) for name, path in files.items()}


def _imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(own_package, node.level, node.module or "")
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                targets.add(full if full in modules else _known(base, modules))
    if _calls_import_module(tree):
        for text in _table_strings(tree):
            level = len(text) - len(text.lstrip("."))
            relative = _absolute(own_package, max(level, 1), text.lstrip("."))
            targets.add(relative if relative in modules else (text if text in modules else None))
    targets.discard(None)
    entered = {".".join(target.split(".")[:depth]) for target in targets
               for depth in range(1, target.count(".") + 1)}
    own = {".".join(name.split(".")[:depth]) for depth in range(1, name.count(".") + 2)}
    return (targets | {package for package in entered if package in modules}) - own  # type: ignore[operator]


def _absolute(own_package: str, level: int, module: str) -> str:
    """``from <level dots><module>`` seen from ``own_package``, as an absolute name ('' = root)."""
    if level == 0:
        return module
    parts = own_package.split(".") if own_package else []
    base = parts[:len(parts) - (level - 1)] if level - 1 <= len(parts) else []
    return ".".join(base + ([module] if module else []))


def _known(dotted: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``dotted`` that is one of ours, or None (an outside import)."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _calls_import_module(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == "import_module":
                return True
    return False


def _table_strings(tree: ast.Module) -> Iterable[str]:
    """Dotted-name strings inside tuples, lists and dicts assigned at module level."""
    for statement in tree.body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and isinstance(
                statement.value, (ast.Tuple, ast.List, ast.Dict)):
            for node in ast.walk(statement.value):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and _DOTTED.match(node.value):
                    yield node.value


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None when the graph has none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph.get(start, ())))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif following in on_path:
                return path[path.index(following):] + [following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None
