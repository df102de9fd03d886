"""Real ComfyUI servers for the queue tests, shared by the whole session (each start costs about
half a minute of this machine's two cores): A and B for sweeps, C to be killed mid-run. Each
has the tiny random-weight SD1.5 checkpoint as ``tiny.safetensors``; the test workflow samples
64x64 in one step. Skipped without COMFYUI_DIR."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from kubik_testing.comfy_server import ComfyServer
from kubik_testing.pack import REPO
from kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint

sys.path.append(str(Path(__file__).parent))   # the test modules import queue_stand_ins

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")


def _need_comfyui():
    if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the real-server queue tests are skipped")


@pytest.fixture(scope="session")
def comfy_servers(tmp_path_factory):
    """{"A", "B", "C"}: three real servers started side by side."""
    _need_comfyui()
    checkpoint = build_tiny_sd15_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", Path(COMFYUI_DIR))
    servers = {}
    for name in "ABC":
        server = ComfyServer(Path(COMFYUI_DIR), REPO, tmp_path_factory.mktemp(f"comfy{name}"))
        (server.models_dir / "checkpoints").mkdir(parents=True)
        os.link(checkpoint, server.models_dir / "checkpoints" / "tiny.safetensors")
        servers[name] = server
    errors = []

    def start(server):
        try:
            server.start()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    # One torch thread per server: three servers with a thread per core each (torch's default)
    # on two shared cores run each 1-step job ~30x slower than side by side on one core each.
    # Read by each server process at start; the test process's own setting is put back after.
    threads_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        threads = [threading.Thread(target=start, args=(s,)) for s in servers.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        if threads_before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads_before
    try:
        if errors:
            raise errors[0]
        yield servers
    finally:
        for server in servers.values():
            server.stop()
