"""Fixtures shared by the hub tests and the node tests (imported into their conftest.py files):
the CivitAI, CDN and Hugging Face stand-in servers, and the environment the hub reads, pointed
at them."""
from __future__ import annotations

import pytest

from hub_stand_ins import CIVITAI_TOKEN, ENV_DATA, StandIn, civitai_version
from kubik_core.hub.netguard import ALLOW_PRIVATE_ENV


@pytest.fixture
def civitai_server():
    with StandIn() as server:
        yield server


@pytest.fixture
def cdn_server():
    # Same machine, other host name: requests treats it as a different host on redirect.
    with StandIn(advertised_host="localhost") as server:
        yield server


@pytest.fixture
def hf_server():
    with StandIn() as server:
        yield server


@pytest.fixture
def hub_env(monkeypatch, tmp_path, civitai_server, cdn_server, hf_server):
    """Environment the node's Hub() reads, pointed at the stand-ins, with version 456 served."""
    cdn_server.add_file("/files/kbk.safetensors", ENV_DATA)
    civitai_server.redirects["/api/download/models/456"] = f"{cdn_server.base}/files/kbk.safetensors"
    civitai_server.json["/api/v1/model-versions/456"] = civitai_version(
        456, 123, "kbk_style.safetensors", ENV_DATA, f"{civitai_server.base}/api/download/models/456")
    for key in ("CIVITAI_TOKEN", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KUBIK_CIVITAI_BASE", f"{civitai_server.base}/api/v1")
    monkeypatch.setenv("CIVITAI_API_TOKEN", CIVITAI_TOKEN)
    monkeypatch.setenv("KUBIK_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBIK_HUB_CONFIG", str(tmp_path / "no-config.json"))
    monkeypatch.setenv("HF_ENDPOINT", hf_server.base)
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")   # the CDN stand-in is on loopback
    return civitai_server
