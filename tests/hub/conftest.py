"""Fixtures for the hub tests: stand-in servers and a fast, recorded-sleep hub config."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubik_core.hub.config import HubConfig, Secret
from kubik_core.hub.http import HubSession
from kubik_core.hub.netguard import AddressPolicy
from kubik_core.hub.service import Hub

# The test modules import hub_stand_ins; appended (not prepended) so that `conftest` still
# names the suite's top-level tests/conftest.py for the other test folders.
sys.path.append(str(Path(__file__).parent))
from hub_fixtures import cdn_server, civitai_server, hf_server, hub_env  # noqa: E402,F401 (fixtures)
from hub_stand_ins import CIVITAI_TOKEN, HF_TOKEN  # noqa: E402


class Sleeps(list):
    """Records every pause the client asks for, without waiting (retries stay instant)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


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
