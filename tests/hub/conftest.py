"""Fixtures for the hub tests: stand-in servers and a fast, recorded-sleep hub config."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubik_core.hub.config import HubConfig, Secret
from kubik_core.hub.http import HubSession
from kubik_core.hub.netguard import ALLOW_PRIVATE_ENV, AddressPolicy
from kubik_core.hub.service import Hub

# The test modules import hub_stand_ins; appended (not prepended) so that `conftest` still
# names the suite's top-level tests/conftest.py for the other test folders.
sys.path.append(str(Path(__file__).parent))
from hub_stand_ins import (CIVITAI_TOKEN, ENV_DATA, HF_TOKEN, StandIn,  # noqa: E402
                           civitai_version)



class Sleeps(list):
    """Records every pause the client asks for, without waiting (retries stay instant)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


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
def sleeps():
    return Sleeps()


@pytest.fixture
def make_hub(tmp_path_factory, sleeps, civitai_server, hf_server):
    """Build a Hub pointed at the stand-ins; keyword arguments override HubConfig fields."""
    hubs = []
    cache_dir = tmp_path_factory.mktemp("response-cache")  # shared by the hubs of one test

    def _make(**overrides) -> Hub:
        values = dict(
            civitai_base=f"{civitai_server.base}/api/v1",
            hf_endpoint=hf_server.base,
            civitai_token=Secret(CIVITAI_TOKEN),
            hf_token=Secret(HF_TOKEN),
            cache_dir=cache_dir,
            connect_timeout_s=2.0,
            read_timeout_s=2.0,
            min_interval_s=0.0,
            max_attempts=3,
            backoff_base_s=0.01,
            # The stand-ins (CDN, plain-URL servers) listen on loopback: opted in explicitly,
            # as a user mirroring models on a LAN would (tests/hostile checks the default).
            address_policy=AddressPolicy(allow_all_private=True),
        )
        values.update(overrides)
        config = HubConfig(**values)
        hub = Hub(config, HubSession(config, sleep=sleeps))
        hubs.append(hub)
        return hub

    yield _make
    for hub in hubs:
        hub.session.close()


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
