"""Fixtures for the 3D data tests: real meshes that ship in pip packages, and a `kubik` runner."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# Mesa's llvmpipe (the render tests) and Triton (imported by torch._dynamo, which timm and
# torchvision pull in) each load their own LLVM; whichever comes second crashes the process
# (segfault in triton/knobs.py). Loading Triton first is safe, so do it before any render.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install -r requirements-dev.txt)")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


@pytest.fixture(scope="session")
def bunny_path() -> Path:
    """The Stanford bunny with holes, ~100k faces, shipped by pymeshfix."""
    return _package_file("pymeshfix", "examples", "StanfordBunny.ply")


@pytest.fixture(scope="session")
def pybullet_objs() -> list[Path]:
    """Three of pybullet_data's procedural random_urdfs meshes."""
    root = _package_file("pybullet_data", "random_urdfs")
    return [root / f"{i:03d}" / f"{i:03d}.obj" for i in (0, 1, 2)]


@pytest.fixture(scope="session")
def duck_path() -> Path:
    """pybullet_data's textured duck (OBJ + MTL + PNG texture)."""
    return _package_file("pybullet_data", "duck.obj")


@pytest.fixture
def kubik(monkeypatch, capsys):
    """Run ``kubik ARGS...`` in-process with only the 3d commands registered; returns (rc, out, err)."""
    from kubik_core import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("recon3d.cli",))

    def run(*argv: str):
        rc = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run

