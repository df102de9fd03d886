"""Hostile download sources against the hub's network guard (issue 15, H2 and tokens).

Every server here is a real HTTP(S) server on a loopback address. 127.0.0.1 and 127.0.0.2 are
both loopback on Linux, so a test can allow one address (as a user allows a LAN mirror with
KUBIK_HUB_ALLOW_PRIVATE=<address>) and show that a redirect to the other is refused. Host names
under .kubik.test resolve through the HubSession's resolver parameter, never through DNS.
"""
from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path

import pytest
import requests

sys.path.append(str(Path(__file__).resolve().parents[1] / "hub"))
from hub_stand_ins import StandIn, sha256_hex  # noqa: E402

from kubik_core.hub.config import HubConfig, Secret  # noqa: E402
from kubik_core.hub.errors import HubAuthError, HubError, HubNotFound, HubUnavailable  # noqa: E402
from kubik_core.hub.http import HostBearer, HubSession  # noqa: E402
from kubik_core.hub.netguard import (ALLOW_PRIVATE_ENV, AddressPolicy,  # noqa: E402
                                     PrivateAddressRefused, system_resolver)
from kubik_core.hub.service import Hub  # noqa: E402
from kubik_testing.tls import self_signed_certificate  # noqa: E402

DATA = b"\x00model bytes\xff" * 4096
SHA = sha256_hex(DATA)
REFUSAL = ("the hub refuses loopback, private, link-local and reserved addresses unless "
           "KUBIK_HUB_ALLOW_PRIVATE=1 is set (or KUBIK_HUB_ALLOW_PRIVATE=<address or network>, "
           "e.g. 192.168.1.0/24, to allow a LAN mirror)")

pytestmark = pytest.mark.timeout(60)


class Resolver:
    """A name service for .kubik.test names that records every look-up."""

    def __init__(self, answers: dict[str, list]):
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        answer = self.answers[host]
        return answer.pop(0) if isinstance(answer[0], list) else answer


def make_hub(policy: AddressPolicy | None = None, resolve=system_resolver, **overrides) -> Hub:
    values = dict(cache_dir=None, connect_timeout_s=2.0, read_timeout_s=2.0, min_interval_s=0.0,
                  max_attempts=1, address_policy=policy or AddressPolicy())
    values.update(overrides)
    config = HubConfig(**values)
    return Hub(config, HubSession(config, sleep=lambda s: None, resolve=resolve))


@pytest.fixture
def server():
    with StandIn() as srv:
        srv.add_file("/files/model.safetensors", DATA)
        yield srv


@pytest.fixture
def mirror():
    """A second server on 127.0.0.2: the address a test allows."""
    with StandIn(bind_host="127.0.0.2", advertised_host="127.0.0.2") as srv:
        srv.add_file("/files/model.safetensors", DATA)
        yield srv


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ default refusal
def test_plain_url_to_loopback_is_refused_by_default(server, tmp_path):
    url = f"{server.base}/files/model.safetensors"
    with pytest.raises(PrivateAddressRefused) as info:
        make_hub().download(url, tmp_path / "loras")
    assert str(info.value) == f"{url}: 127.0.0.1 is a loopback address; {REFUSAL}"
    assert server.seen == []                      # no connection was made
    assert files_in(tmp_path / "loras") == []


def test_redirect_from_an_allowed_host_to_loopback_is_refused(server, mirror, tmp_path):
    mirror.redirects["/files/moved.safetensors"] = f"{server.base}/files/model.safetensors"
    url = f"{mirror.base}/files/moved.safetensors"
    hub = make_hub(AddressPolicy(networks=["127.0.0.2"]))
    with pytest.raises(PrivateAddressRefused) as info:
        hub.download(url, tmp_path)
    assert str(info.value) == (f"{url} redirected to {server.base}/files/model.safetensors: "
                               f"127.0.0.1 is a loopback address; {REFUSAL}")
    assert len(mirror.requests_to("/files/moved.safetensors")) == 1
    assert server.seen == []
    assert files_in(tmp_path) == []


def test_redirect_to_a_name_on_a_private_network_is_refused_before_connecting(mirror, tmp_path):
    mirror.redirects["/files/moved.safetensors"] = "http://nas.kubik.test:8080/model.safetensors"
    resolver = Resolver({"nas.kubik.test": ["10.20.30.40"]})
    hub = make_hub(AddressPolicy(networks=["127.0.0.2"]), resolve=resolver)
    with pytest.raises(PrivateAddressRefused, match=r"redirected to http://nas\.kubik\.test:8080/"
                       r"model\.safetensors: nas\.kubik\.test \(10\.20\.30\.40\) is a private "
                       r"address; the hub refuses"):
        hub.download(f"{mirror.base}/files/moved.safetensors", tmp_path)
    assert resolver.calls == [("nas.kubik.test", 8080)]


def test_a_name_with_one_private_address_among_public_ones_is_refused(tmp_path):
    resolver = Resolver({"mixed.kubik.test": ["93.184.216.34", "192.168.0.7"]})
    with pytest.raises(PrivateAddressRefused, match=r"mixed\.kubik\.test \(192\.168\.0\.7\) is a "
                                                    r"private address"):
        make_hub(resolve=resolver).download("http://mixed.kubik.test/m.safetensors", tmp_path)


# ------------------------------------------------------------------ explicit opt-in
def test_the_environment_opt_in_allows_loopback(server, tmp_path):
    config = HubConfig.from_env({ALLOW_PRIVATE_ENV: "1", "KUBIK_HUB_CONFIG": str(tmp_path / "no"),
                                 "KUBIK_HUB_CACHE": str(tmp_path / "cache")}, max_attempts=1)
    with Hub(config) as hub:
        record = hub.download(f"{server.base}/files/model.safetensors", tmp_path / "loras",
                              expected_sha256=SHA)
    assert record["status"] == "downloaded"
    assert (tmp_path / "loras" / "model.safetensors").read_bytes() == DATA


def test_an_opt_in_for_one_address_allows_that_address_only(server, mirror, tmp_path):
    config = HubConfig.from_env({ALLOW_PRIVATE_ENV: "127.0.0.2", "KUBIK_HUB_CONFIG": "/nonexistent",
                                 "KUBIK_HUB_CACHE": str(tmp_path / "cache")}, max_attempts=1)
    with Hub(config) as hub:
        assert hub.download(f"{mirror.base}/files/model.safetensors", tmp_path / "a",
                            expected_sha256=SHA)["verified"]
        with pytest.raises(PrivateAddressRefused, match="127.0.0.1 is a loopback address"):
            hub.download(f"{server.base}/files/model.safetensors", tmp_path / "b")
    assert server.seen == []


@pytest.mark.parametrize("value, message", [
    ("lan", "KUBIK_HUB_ALLOW_PRIVATE: 'lan' is neither 1 nor an address or network such as "
            "192.168.1.20 or 192.168.1.0/24"),
    ("10.0.0.0/8, 300.1.1.1", "KUBIK_HUB_ALLOW_PRIVATE: '300.1.1.1' is neither 1 nor an address "
                              "or network such as 192.168.1.20 or 192.168.1.0/24"),
])
def test_a_bad_opt_in_value_is_named(value, message):
    with pytest.raises(ValueError) as info:
        HubConfig.from_env({ALLOW_PRIVATE_ENV: value, "KUBIK_HUB_CONFIG": "/nonexistent"})
    assert str(info.value) == message


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"),       # cloud metadata service
    ("100.64.0.1", "not a public address"),            # shared address space (CGNAT)
    ("0.0.0.0", "the unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("::1", "a loopback address"),
    ("fe80::1", "a link-local address"),
    ("fc00::1", "a private address"),
    ("::ffff:127.0.0.1", "a loopback address"),        # IPv4-mapped
    ("64:ff9b::a00:1", "a private address"),           # NAT64 of 10.0.0.1
    ("93.184.216.34", None),
    ("2606:4700::1111", None),
])
def test_address_policy_by_default(address, reason):
    import ipaddress

    assert AddressPolicy().refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("192.168.1.1", True), ("169.254.169.254", True), ("::1", True),
    ("224.0.0.1", False), ("0.0.0.0", False), ("ff02::1", False),
])
def test_the_opt_in_never_allows_multicast_or_unspecified(address, allowed):
    import ipaddress

    assert (AddressPolicy(allow_all_private=True).refusal(ipaddress.ip_address(address))
            is None) == allowed


# ------------------------------------------------------------------ pinned connections
def test_a_name_is_resolved_once_per_hop_and_connected_at_the_checked_address(mirror, tmp_path):
    mirror.redirects["/files/old.safetensors"] = "/files/model.safetensors"
    resolver = Resolver({"models.kubik.test": ["127.0.0.2"]})
    url = f"http://models.kubik.test:{mirror.port}/files/old.safetensors"
    hub = make_hub(AddressPolicy(networks=["127.0.0.2"]), resolve=resolver)
    record = hub.download(url, tmp_path, filename="model.safetensors", expected_sha256=SHA)
    assert record["status"] == "downloaded"
    # one look-up per hop; the system resolver (which knows no .kubik.test) was never asked
    assert resolver.calls == [("models.kubik.test", mirror.port)] * 2
    assert {s.headers["Host"] for s in mirror.seen} == {f"models.kubik.test:{mirror.port}"}


def test_a_name_that_changes_its_answer_between_hops_is_checked_again(mirror, server, tmp_path):
    mirror.redirects["/files/old.safetensors"] = "/files/model.safetensors"
    # DNS rebinding: the second look-up answers the loopback address the policy does not allow
    resolver = Resolver({"models.kubik.test": [["127.0.0.2"], ["127.0.0.1"]]})
    url = f"http://models.kubik.test:{mirror.port}/files/old.safetensors"
    hub = make_hub(AddressPolicy(networks=["127.0.0.2"]), resolve=resolver)
    with pytest.raises(PrivateAddressRefused, match=r"models\.kubik\.test \(127\.0\.0\.1\) is a "
                                                    r"loopback address"):
        hub.download(url, tmp_path, filename="model.safetensors")
    assert [s.path for s in mirror.seen] == ["/files/old.safetensors"]
    assert server.seen == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for models.kubik.test."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "models.kubik.test")


@pytest.fixture
def tls_mirror(certificate, monkeypatch):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server_names: list = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))   # trust the test certificate
    with StandIn(bind_host="127.0.0.2", advertised_host="models.kubik.test",
                 ssl_context=context) as srv:
        srv.add_file("/files/model.safetensors", DATA)
        srv.server_names = server_names
        yield srv


def test_https_to_a_pinned_address_keeps_the_name_for_sni_and_the_certificate(tls_mirror,
                                                                             tmp_path):
    resolver = Resolver({"models.kubik.test": ["127.0.0.2"], "other.kubik.test": ["127.0.0.2"]})
    hub = make_hub(AddressPolicy(networks=["127.0.0.2"]), resolve=resolver)
    record = hub.download(f"https://models.kubik.test:{tls_mirror.port}/files/model.safetensors",
                          tmp_path, expected_sha256=SHA)
    assert record["verified"] and (tmp_path / "model.safetensors").read_bytes() == DATA
    assert tls_mirror.server_names == ["models.kubik.test"]
    assert tls_mirror.seen[0].headers["Host"] == f"models.kubik.test:{tls_mirror.port}"
    # the certificate is still checked against the name: another name on that address fails
    with pytest.raises(HubUnavailable, match="connection failed after 1 attempts"):
        hub.download(f"https://other.kubik.test:{tls_mirror.port}/files/model.safetensors",
                     tmp_path / "other")
    assert len(tls_mirror.seen) == 1


# ------------------------------------------------------------------ no echo of other servers
def test_error_bodies_of_other_servers_are_never_quoted(server, tmp_path):
    secret = "root:x:0:0 internal admin page"
    server.behaviour.status_queue["/files/model.safetensors"] = [(403, {}, {"error": secret})]
    hub = make_hub(AddressPolicy(allow_all_private=True))
    url = f"{server.base}/files/model.safetensors"
    with pytest.raises(HubAuthError) as info:
        hub.download(url, tmp_path)
    assert str(info.value) == (f"{url}: access denied (HTTP 403); the server refused the "
                               "download; a signed link may have expired, fetch a new one")
    server.behaviour.status_queue["/files/model.safetensors"] = [(404, {}, {"message": secret})]
    with pytest.raises(HubNotFound) as info:
        hub.download(url, tmp_path)
    assert str(info.value) == f"{url}: not found (HTTP 404)"


def test_a_configured_hubs_error_text_is_summarised(server, tmp_path):
    server.json_handlers["/api/v1/model-versions/"] = lambda path, query: (
        404, {"error": "No model   version\nwith id 5"})
    hub = make_hub(civitai_base=f"{server.base}/api/v1")
    with pytest.raises(HubNotFound) as info:
        hub.download("civitai:5", tmp_path)
    assert str(info.value) == (f"{server.base}/api/v1/model-versions/5: not found (HTTP 404) "
                               "(No model version with id 5)")


def test_a_huge_retry_after_on_a_server_error_gives_up_at_once(server, tmp_path):
    slept = []
    config = HubConfig(cache_dir=None, min_interval_s=0.0, max_attempts=3,
                       address_policy=AddressPolicy(allow_all_private=True))
    hub = Hub(config, HubSession(config, sleep=slept.append))
    server.behaviour.status_queue["/files/model.safetensors"] = [(503, {"Retry-After": "9" * 400},
                                                                  {})]
    with pytest.raises(HubUnavailable, match="server error 503, the server asks to wait inf s"):
        hub.download(f"{server.base}/files/model.safetensors", tmp_path)
    assert slept == []


# ------------------------------------------------------------------ tokens
TOKEN = "tok-SECRET-123"


def authorization(base: str, url: str) -> str | None:
    request = requests.Request("GET", url, auth=HostBearer(Secret(TOKEN), base)).prepare()
    return request.headers.get("Authorization")


@pytest.mark.parametrize("base, url, sent", [
    ("https://civitai.com/api/v1", "https://civitai.com/api/download/models/5", True),
    ("https://civitai.com/api/v1", "https://civitai.com:443/api/v1/models", True),
    ("https://civitai.com/api/v1", "https://civitai.com:8443/api/v1/models", False),
    ("https://civitai.com/api/v1", "http://civitai.com/api/v1/models", False),
    ("https://civitai.com/api/v1", "https://cdn.civitai.com/file", False),
    ("http://192.168.1.5:8080/api/v1", "http://192.168.1.5:8080/api/v1/models", False),
    ("http://127.0.0.1:9000/api/v1", "http://127.0.0.1:9000/api/v1/models", True),
    ("http://127.0.0.1:9000/api/v1", "http://127.0.0.1:9001/api/v1/models", False),
])
def test_a_token_goes_over_https_to_its_own_origin_only(base, url, sent):
    assert authorization(base, url) == (f"Bearer {TOKEN}" if sent else None)


def test_hf_token_is_not_given_to_an_http_endpoint_on_the_network():
    from kubik_core.hub.huggingface import HuggingFaceClient

    for endpoint, sent in (("http://192.168.1.5:8080", False), ("https://huggingface.co", True)):
        config = HubConfig(hf_endpoint=endpoint, hf_token=Secret(TOKEN), cache_dir=None)
        client = HuggingFaceClient(HubSession(config))
        assert client.api.token == (TOKEN if sent else False)


def test_no_token_reaches_files_or_messages_when_refused(server, tmp_path):
    url = f"{server.base}/files/model.safetensors?token={TOKEN}"
    with pytest.raises(PrivateAddressRefused) as info:
        make_hub().download(url, tmp_path)
    assert TOKEN not in str(info.value)
    assert json.dumps(files_in(tmp_path)).find(TOKEN) == -1


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://h.example:99999/x",
                                      "gopher://h.example/x"])
def test_a_redirect_to_something_unfollowable_is_a_clear_error(server, tmp_path, location):
    server.redirects["/files/moved.safetensors"] = location
    url = f"{server.base}/files/moved.safetensors"
    with pytest.raises(HubError) as info:
        make_hub(AddressPolicy(allow_all_private=True)).download(url, tmp_path)
    assert str(info.value) == (f"{url}: redirected to something that is not an http(s) address "
                               "with a host, which the hub does not follow")


def test_a_redirect_loop_ends(server, tmp_path):
    server.redirects["/files/loop.safetensors"] = "/files/loop.safetensors"
    url = f"{server.base}/files/loop.safetensors"
    with pytest.raises(HubError) as info:
        make_hub(AddressPolicy(allow_all_private=True)).download(url, tmp_path)
    assert str(info.value) == f"{url}: more than 10 redirects; the link is broken or loops"
    assert len(server.seen) == 11
