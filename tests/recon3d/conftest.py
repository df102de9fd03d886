"""Fixtures for the 3D data tests: real meshes that ship in pip packages, a `kubik` runner, and the
Ray clusters the test_ray_*.py modules share (each takes seconds to start on 2 CPUs)."""
from __future__ import annotations

import importlib.util
import secrets
import shutil
import sys
import tempfile
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



# ---------------------------------------------------------------- Ray (test_ray_*.py)
@pytest.fixture(scope="session")
def ray_source(tmp_path_factory, pybullet_objs):
    """Four real pybullet meshes (one a folder deeper) and a file that is no mesh."""
    src = tmp_path_factory.mktemp("ray") / "src"
    objs = [*pybullet_objs, pybullet_objs[0].parent.parent / "003" / "003.obj"]
    for path, folder in zip(objs, ("000", "001", "002", "nested/003")):
        (src / folder).mkdir(parents=True)
        shutil.copy2(path, src / folder / path.name)
    (src / "broken.obj").write_text("no mesh here\n")
    return src


@pytest.fixture(scope="session")
def ray_reference(ray_source):
    """The single-process run of ray_source, with shards: what every Ray run must reproduce.
    Returns (its OUT, its report); its shards are in OUT's sibling reference_shards."""
    from kubik_core.recon3d.data.preprocess import preprocess_folder
    from kubik_testing.ray_nodes import CONFIG

    out = ray_source.parent / "dataset"  # the folder name the Ray runs use too: shards record it
    report = preprocess_folder(ray_source, out, CONFIG, shards=ray_source.parent / "reference_shards",
                               shard_size=3)
    assert report["done"] == 4 and len(report["failed"]) == 1
    return out, report


def _ray_nodes(env_extra: dict | None = None, token: str | None = None):
    """A RayNodes over a fresh temporary folder, skipped without Ray or its command."""
    pytest.importorskip("ray")
    from kubik_testing.ray_nodes import RAY_COMMAND, RayNodes, node_environment

    if not RAY_COMMAND.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    env = node_environment(**(env_extra or {}))
    if token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    return RayNodes(Path(tempfile.mkdtemp(prefix="kray-")), env)   # short: Ray's socket paths live under it


def _stop(nodes) -> None:
    alive = nodes.stop()
    shutil.rmtree(nodes.temp, ignore_errors=True)
    assert not alive, f"Ray processes outlived the cluster: {alive}"


@pytest.fixture(scope="session")
def token_head():
    """A one-CPU Ray head (`ray start --head --block`, its Ray Client server on a free port) with
    token authentication on and a token of its own: ``env`` (its RAY_AUTH_TOKEN) is how a driver
    joins it. Every process it started must be gone at the end."""
    nodes = _ray_nodes(token=secrets.token_hex(32))
    try:
        nodes.start_head(cpus=1)
        yield nodes
    finally:
        _stop(nodes)


@pytest.fixture(scope="session")
def hidden_cluster(tmp_path_factory):
    """A head with no CPUs (so every task runs on a worker node) and the 2-CPU worker node
    "hidden", started in a mount namespace where a tmpfs hides this session's temporary folder (the
    meshes, OUT, everything the tests write), as a machine without a shared file system. Its
    authentication is this process's (node_environment). test_ray_cluster.py adds the node "seeing"
    in its later tests and kills it in its last; test_ray_client.py's hidden_worker_only stops it
    if it still runs, so neither depends on the order the files run in. Needs root and `unshare --mount`: skipped otherwise."""
    from kubik_testing.ray_nodes import cannot_hide

    hidden = tmp_path_factory.getbasetemp()
    reason = cannot_hide(hidden)
    if reason:
        pytest.skip(reason)
    # a killed node is declared dead within seconds, not Ray's default half minute
    nodes = _ray_nodes({"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                        "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"})
    try:
        nodes.start_head(cpus=0)
        nodes.start_worker("hidden", cpus=2, hide=hidden)
        yield nodes
    finally:
        _stop(nodes)
