"""Fixtures for the browser tests: a real ComfyUI serving its real editor, and a headless Chromium.

What they need, and where it comes from on a fresh Debian machine:
- ComfyUI's source in COMFYUI_DIR (`make comfyui`), whose requirements bring the editor
  (comfyui-frontend-package) into the venv;
- Chromium from Debian's packages (`scripts/install_system_deps.sh`, run by `make setup`);
- Python's playwright (requirements-dev.txt), which drives that Chromium; no browser download.

Without one of them the tests skip, saying which; with ``KUBIK_REQUIRE_BROWSER=1`` (set by
.ci/run) they fail instead, so that CI can never pass by skipping them.
"""
from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from kubik_testing.comfy_server import ComfyServer
from kubik_testing.pack import REPO
from kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint
from kubik_testing.tiny_controlnet import build_tiny_sd15_controlnet
from kubik_testing.tiny_vision import tiny_dinov2

# The folder name users install the pack under (pyproject's project name); the template dialog
# shows it as the category of the pack's templates.
PACK_FOLDER = "kubikai"
TINY_CHECKPOINT = "kubik_tiny_sd15.safetensors"
TINY_CONTROLNET = "kubik_tiny_sd15_controlnet.safetensors"
TINY_ENCODER = "kubik_tiny_dinov2"   # a folder in models/clip_vision, for Kubik Consistency
# The flags Chromium needs as root in a container without a network beyond loopback (and with
# a small /dev/shm).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def unavailable(reason: str):
    """Skip with ``reason``, or fail when this run must include the browser tests (CI)."""
    if os.environ.get("KUBIK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (KUBIK_REQUIRE_BROWSER=1: the browser tests must run here)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    path = os.environ.get("COMFYUI_DIR")
    if not path or not (Path(path) / "main.py").exists():
        unavailable("COMFYUI_DIR is not set to a ComfyUI checkout (make comfyui)")
    return Path(path)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium on the PATH, or the executable $KUBIK_CHROMIUM names."""
    named = os.environ.get("KUBIK_CHROMIUM")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            unavailable(f"KUBIK_CHROMIUM={named} is not an executable file")
        return named
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        unavailable("Chromium is not installed (Debian: apt-get install chromium; "
                    "scripts/install_system_deps.sh does it as root)")
    return path


# Module scope: between its calls, Playwright's sync API leaves its asyncio loop marked as
# running in this thread, which would break asyncio.run() in the tests of other modules.
@pytest.fixture(scope="module")
def browser(chromium_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Python's playwright is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        # Playwright starts Chromium headless with a fresh, temporary --user-data-dir.
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, comfyui_dir) -> Path:
    """A tiny random SD1.5 checkpoint, built once per session (about 290 MB, a few seconds)."""
    path = tmp_path_factory.mktemp("tiny-checkpoint") / TINY_CHECKPOINT
    return build_tiny_sd15_checkpoint(path, comfyui_dir)


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory, comfyui_dir) -> Path:
    """A tiny random SD1.5 ControlNet that fits the tiny checkpoint (about 20 MB)."""
    return build_tiny_sd15_controlnet(tmp_path_factory.mktemp("tiny-controlnet") / TINY_CONTROLNET, comfyui_dir)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny random DINOv2 folder (config.json + model.safetensors), as Kubik Consistency reads
    from models/clip_vision (a few hundred kB)."""
    return tiny_dinov2(tmp_path_factory.mktemp("tiny-encoder") / TINY_ENCODER)


@pytest.fixture(scope="module")
def editor_server(tmp_path_factory, comfyui_dir, tiny_checkpoint, tiny_controlnet, tiny_encoder):
    """ComfyUI with the pack and its real editor; the tiny checkpoint, ControlNet and image
    encoder are its only model files.

    The input folder stays empty: the templates must run on a fresh ComfyUI whatever it holds.
    The user is a returning one (tutorial done), so the editor opens on the default graph and the
    test opens the template dialog itself, as a user does. For screenshots of a whole graph, nodes
    keep their text at any zoom (no low-detail rendering) and the minimap is hidden.
    """
    server = ComfyServer(comfyui_dir, REPO, tmp_path_factory.mktemp("comfyui-editor"),
                         frontend=True, pack_folder=PACK_FOLDER)
    checkpoints = server.models_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.symlink(tiny_checkpoint, checkpoints / TINY_CHECKPOINT)
    (server.models_dir / "controlnet").mkdir(parents=True)
    os.symlink(tiny_controlnet, server.models_dir / "controlnet" / TINY_CONTROLNET)
    # a copy, not a link: encoder folders are found by walking models/clip_vision, which follows no links
    shutil.copytree(tiny_encoder, server.models_dir / "clip_vision" / TINY_ENCODER)
    server.start()
    try:
        for setting, value in (("Comfy.TutorialCompleted", b"true"), ("LiteGraph.Canvas.MinFontSizeForLOD", b"0"),
                               ("Comfy.Minimap.Visible", b"false")):
            request = urllib.request.Request(f"{server.url}/api/settings/{setting}", data=value, method="POST")
            urllib.request.urlopen(request, timeout=30).close()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def screenshot_dirs(tmp_path_factory) -> list[Path]:
    """Where screenshots go: the session's temp folder, and $KUBIK_SCREENSHOT_DIR when set."""
    dirs = [tmp_path_factory.mktemp("screens")]
    extra = os.environ.get("KUBIK_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        dirs.append(Path(extra))
    return dirs
