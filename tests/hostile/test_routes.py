"""Hostile requests to the pack's HTTP routes (issue 15: C1, H1, H2 over HTTP, limits, leaks).

The routes run as ComfyUI runs them: registered by ``nodes/routes.py`` on a PromptServer whose
``folder_paths`` and ``server`` modules are stand-ins shaped like ComfyUI 0.8.0's, served by a
real aiohttp server. Every case asserts the exact status and message. With COMFYUI_DIR set to a
ComfyUI checkout, the last tests start the real ComfyUI with the pack installed, fire the hostile
requests at it and check that it still answers afterwards. Downloads go to real HTTP servers on
127.0.0.1, which the routes refuse unless a test opts in with KUBIK_HUB_ALLOW_PRIVATE.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.append(str(Path(__file__).resolve().parents[1] / "hub"))
from comfy_stand_ins import (PromptServerStandIn, app_for, folder_paths_module,  # noqa: E402
                             server_module)
from hub_stand_ins import StandIn, sha256_hex  # noqa: E402

DATA = os.urandom(40_000)
SHA = sha256_hex(DATA)
TOKEN = "pasted-SECRET-7f3a"
KINDS_HINT = "a model folder listed by GET /kubik/hub/kinds"
SOURCE_HINT = "civitai:<version id>, hf:<owner>/<repo>/<file> or an https:// URL"
CLIENT_HINT = "the websocket client id (letters, digits, '_', '-', '.', ':')"
HASH_HINT = ("a hex hash of 8, 10, 12 or 64 digits (CRC32, AutoV2, AutoV3, SHA-256); local files "
             "are looked up with `kubik hub info FILE` on the server")
DOWNLOAD_FIELDS = "kind, source, expected_sha256, file_name, client_id"
REFUSAL = ("is a loopback address; the hub refuses loopback, private, link-local and reserved "
           "addresses unless KUBIK_HUB_ALLOW_PRIVATE=1 is set")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def files():
    """A plain-URL file server and a CivitAI stand-in (so that no request leaves the machine)."""
    with StandIn() as srv:
        srv.add_file("/files/model.safetensors", DATA)
        srv.add_file("/files/evil.py", b"import os\nos.system('id')\n")
        yield srv


@pytest.fixture
def hubs():
    """Stand-in for the CivitAI API and the Hugging Face endpoint (another port: another host)."""
    with StandIn() as srv:
        yield srv


@pytest.fixture
def comfy(monkeypatch, tmp_path, pack, files, hubs):
    """The pack's routes on a stand-in PromptServer; the hub's environment points at stand-ins."""
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths_module(tmp_path))
    instance = PromptServerStandIn()
    monkeypatch.setitem(sys.modules, "server", server_module(instance))
    routes = sys.modules[f"{pack.__name__}.nodes.routes"]
    assert routes.register_routes() is True
    for name in ("CIVITAI_API_TOKEN", "CIVITAI_TOKEN", "HF_TOKEN", "KUBIK_HUB_ALLOW_PRIVATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBIK_CIVITAI_BASE", f"{hubs.base}/api/v1")
    monkeypatch.setenv("HF_ENDPOINT", hubs.base)
    monkeypatch.setenv("KUBIK_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBIK_HUB_CONFIG", str(tmp_path / "no-config.json"))
    return SimpleNamespace(instance=instance, routes=routes, root=tmp_path, files=files, hubs=hubs,
                           bridge=sys.modules[f"{pack.__name__}.nodes.comfy_bridge"])


@pytest.fixture
def http(comfy):
    """Call the routes through a real aiohttp server: ``http("GET", path, ...) -> (status, json)``."""
    from aiohttp.test_utils import TestClient, TestServer

    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(app_for(comfy.instance)), loop=loop)
    loop.run_until_complete(client.start_server())

    async def send(method, path, **kwargs):
        response = await client.request(method, path, **kwargs)
        return response.status, await response.json()

    def call(method, path, **kwargs):
        return loop.run_until_complete(send(method, path, **kwargs))

    call.loop = loop
    yield call
    loop.run_until_complete(client.close())
    loop.close()


def wait_for_job(http, job_id: str) -> dict:
    state = {}
    for _ in range(400):   # bounded: ~20 s
        status, state = http("GET", f"/kubik/hub/jobs/{job_id}")
        assert status == 200
        if state["state"] != "running":
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running: {state}")


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------ POST /kubik/hub/download
def nested(depth: int):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


DOWNLOAD_CORPUS = [
    # (body, status, message)
    ({}, 400, f"kind: required ({KINDS_HINT})"),
    ({"kind": ["loras"], "source": "civitai:1"}, 400,
     f"kind: must be a string ({KINDS_HINT}), not a list"),
    ({"kind": True, "source": "civitai:1"}, 400, f"kind: must be a string ({KINDS_HINT}), not a boolean"),
    ({"kind": "custom_nodes", "source": "civitai:1"}, 400, "kind: 'custom_nodes' is not a model folder"),
    ({"kind": "configs", "source": "civitai:1"}, 400, "kind: 'configs' is not a model folder"),
    ({"kind": "diffusers", "source": "civitai:1"}, 400, "kind: 'diffusers' is not a model folder"),
    ({"kind": "nope", "source": "civitai:1"}, 400,
     "kind: 'nope' is not a ComfyUI model folder; choose one of loras, checkpoints, classifiers, "
     "kubik3d"),
    ({"kind": "k" * 65, "source": "civitai:1"}, 400, "kind: 65 characters is too long (at most 64)"),
    ({"kind": "loras"}, 400, f"source: required ({SOURCE_HINT})"),
    ({"kind": "loras", "source": "   "}, 400, f"source: required ({SOURCE_HINT})"),
    ({"kind": "loras", "source": {"url": "x"}}, 400,
     f"source: must be a string ({SOURCE_HINT}), not an object"),
    ({"kind": "loras", "source": "s" * 3000}, 400, "source: 3000 characters is too long (at most 2048)"),
    ({"kind": "loras", "source": "civitai:1\x00"}, 400, f"source: contains control characters ({SOURCE_HINT})"),
    ({"kind": "loras", "source": "civitai:1", "expected_sha256": "xyz"}, 400,
     "expected_sha256: 64 hex digits"),
    ({"kind": "loras", "source": "civitai:1", "expected_sha256": 123}, 400,
     "expected_sha256: must be a string (64 hex digits), not a number"),
    ({"kind": "loras", "source": "civitai:1", "file_name": "f" * 300}, 400,
     "file_name: 300 characters is too long (at most 255)"),
    ({"kind": "loras", "source": "civitai:1", "client_id": ["a", "b"]}, 400,
     f"client_id: must be a string ({CLIENT_HINT}), not a list"),
    ({"kind": "loras", "source": "civitai:1", "client_id": {"sid": 1}}, 400,
     f"client_id: must be a string ({CLIENT_HINT}), not an object"),
    ({"kind": "loras", "source": "civitai:1", "client_id": 7}, 400,
     f"client_id: must be a string ({CLIENT_HINT}), not a number"),
    ({"kind": "loras", "source": "civitai:1", "client_id": "a b"}, 400, f"client_id: {CLIENT_HINT}"),
    ({"kind": "loras", "source": "civitai:1", "client_id": "c" * 129}, 400,
     "client_id: 129 characters is too long (at most 128)"),
    ({"kind": "loras", "source": "civitai:1", "folder": "/etc"}, 400,
     f"'folder': unknown field; this route takes {DOWNLOAD_FIELDS}"),
    ({"kind": nested(100), "source": "civitai:1"}, 400, "body: JSON is nested 101 levels deep (limit 4)"),
]


@pytest.mark.parametrize("body, status, message", DOWNLOAD_CORPUS,
                         ids=[str(i) for i in range(len(DOWNLOAD_CORPUS))])
def test_download_body_corpus(http, comfy, body, status, message):
    assert http("POST", "/kubik/hub/download", json=body) == (status, {"error": message})
    assert comfy.instance.events == [] and comfy.instance.publish_errors == []
    assert tree(comfy.root / "models") == [] and tree(comfy.root / "custom_nodes") == []


@pytest.mark.parametrize("kwargs, status, message", [
    ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400,
     "body: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1))"),
    ({"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400,
     "body: expected a JSON object, not a list"),
    ({"data": b'{"kind": 1e999}', "headers": {"Content-Type": "application/json"}}, 400,
     "body: number 1e999 is out of range (not a finite float)"),
    ({"data": b'{"kind": NaN}', "headers": {"Content-Type": "application/json"}}, 400,
     "body: NaN is not a JSON number (only finite numbers are accepted)"),
    ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400,
     "body: JSON is not valid UTF-8 (byte 0)"),
    ({"data": b'{"kind": "loras"}', "headers": {"Content-Type": "text/plain"}}, 415,
     "body: send JSON with Content-Type: application/json"),
    ({"data": b"kind=loras", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
     415, "body: send JSON with Content-Type: application/json"),
    ({"json": {"kind": "loras", "source": "x" * 20_000}}, 400,
     f"body: {len(json.dumps({'kind': 'loras', 'source': 'x' * 20_000}))} bytes is too large "
     "(at most 16384)"),
    ({"json": {"kind": "loras"}, "params": {"kind": "custom_nodes"}}, 400,
     "query: this route takes its fields in the JSON body"),
])
def test_download_raw_body_corpus(http, comfy, kwargs, status, message):
    assert http("POST", "/kubik/hub/download", **kwargs) == (status, {"error": message})
    assert comfy.instance.events == []


def test_a_huge_body_without_length_is_cut_off(http):
    async def chunks():
        for _ in range(100):
            yield b" " * 1024

    assert http("POST", "/kubik/hub/download", data=chunks(),
                headers={"Content-Type": "application/json"}) == (
        400, {"error": "body: too large (at most 16384 bytes)"})


def test_a_non_string_client_id_never_reaches_comfyui(http, comfy, files):
    # a request that is otherwise valid: only the client id is wrong
    body = {"kind": "loras", "source": f"{files.base}/files/model.safetensors",
            "client_id": ["c1"]}
    status, answer = http("POST", "/kubik/hub/download", json=body)
    assert (status, answer) == (400, {"error": f"client_id: must be a string ({CLIENT_HINT}), "
                                               "not a list"})
    assert comfy.instance.events == [] and comfy.instance.publish_errors == []
    assert files.seen == []
    with pytest.raises(TypeError, match="client_id must be a string, not list"):
        comfy.bridge.send_event("kubik.hub.done", {}, ["c1"])
    assert comfy.instance.publish_errors == []


# ------------------------------------------------------------------ C1 through the route
def test_kinds_lists_model_folders_only(http, comfy):
    status, answer = http("GET", "/kubik/hub/kinds")
    assert (status, answer) == (200, {"kinds": ["loras", "checkpoints", "classifiers", "kubik3d"]})


def test_a_model_kind_configured_inside_custom_nodes_is_refused(http, comfy):
    import folder_paths

    inside = comfy.root / "custom_nodes" / "SomePack" / "models"
    folder_paths.folder_names_and_paths["pack_models"] = ([str(inside)], {".safetensors"})
    assert "pack_models" not in http("GET", "/kubik/hub/kinds")[1]["kinds"]
    assert http("POST", "/kubik/hub/download",
                json={"kind": "pack_models", "source": "civitai:1"}) == (
        400, {"error": "kind: the 'pack_models' folder lies inside a custom_nodes folder, where "
                       "downloads are not allowed"})
    assert tree(comfy.root / "custom_nodes") == []


@pytest.mark.parametrize("body_extra, file_name", [
    ({"file_name": "evil.py"}, "evil.py"),
    ({"file_name": "../../custom_nodes/evil.py"}, "evil.py"),
    ({}, "evil.py"),                                   # the URL's own name
])
def test_python_files_are_never_written_by_a_download(http, comfy, files, monkeypatch,
                                                      body_extra, file_name):
    monkeypatch.setenv("KUBIK_HUB_ALLOW_PRIVATE", "1")
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": f"{files.base}/files/evil.py",
                                "client_id": "c1", **body_extra})
    assert status == 200
    state = wait_for_job(http, answer["job_id"])
    assert state["state"] == "error"
    assert state["error"] == (f"file_name: file name {file_name!r}: this model folder takes only "
                              ".bin, .ckpt, .pt, .pt2, .pth, .safetensors, .sft files; pass a file "
                              "name with one of these extensions")
    assert tree(comfy.root / "models") in ([], ["loras"]) and tree(comfy.root / "custom_nodes") == []
    assert files.requests_to("/files/evil.py") == []


# ------------------------------------------------------------------ H2 through the route
def test_a_loopback_source_is_refused_by_default(http, comfy, files):
    url = f"{files.base}/files/model.safetensors"
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": url, "client_id": "c1"})
    assert status == 200
    state = wait_for_job(http, answer["job_id"])
    assert state["state"] == "error" and state["error"].startswith(f"{url}: 127.0.0.1 {REFUSAL}")
    assert files.seen == []
    assert comfy.instance.events == [("kubik.hub.error", {"job_id": answer["job_id"],
                                                          "error": state["error"],
                                                          "warnings": []}, "c1")]


def test_download_with_the_opt_in_reports_to_its_client_only_without_paths(http, comfy, files,
                                                                         monkeypatch):
    monkeypatch.setenv("KUBIK_HUB_ALLOW_PRIVATE", "127.0.0.1")
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": f"{files.base}/files/model.safetensors",
                                "expected_sha256": SHA, "client_id": "c1"})
    assert status == 200
    state = wait_for_job(http, answer["job_id"])
    assert state["state"] == "done"
    assert state["result"] == {"file_name": "model.safetensors", "sha256": SHA,
                               "size_bytes": len(DATA), "status": "downloaded", "verified": True,
                               "resumed_from": 0, "source": "url",
                               "sidecars": ["model.metadata.json"]}
    assert (comfy.root / "models" / "loras" / "model.safetensors").read_bytes() == DATA
    events = comfy.instance.events
    assert events and {sid for _, _, sid in events} == {"c1"}
    assert events[-1][0] == "kubik.hub.done" and events[-1][1]["file_name"] == "model.safetensors"
    assert str(comfy.root) not in json.dumps(events) + json.dumps(state)


def test_a_download_without_client_id_sends_no_event(http, comfy, files, monkeypatch):
    monkeypatch.setenv("KUBIK_HUB_ALLOW_PRIVATE", "1")
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": f"{files.base}/files/model.safetensors"})
    assert status == 200 and wait_for_job(http, answer["job_id"])["state"] == "done"
    assert comfy.instance.events == []


def test_errors_never_show_server_paths_or_remote_bodies(http, comfy, files, monkeypatch):
    monkeypatch.setenv("KUBIK_HUB_ALLOW_PRIVATE", "1")
    (comfy.root / "models" / "loras").mkdir(parents=True)
    (comfy.root / "models" / "loras" / "model.safetensors").write_bytes(b"the user's own file")
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": f"{files.base}/files/model.safetensors",
                                "expected_sha256": SHA, "client_id": "c1"})
    state = wait_for_job(http, answer["job_id"])
    assert state["error"] == (
        f"model.safetensors is already in the loras folder, but it is not the file asked for: it "
        f"has SHA-256 {sha256_hex(b'the user' + chr(39).encode() + b's own file')}, the file asked "
        f"for has {SHA}; nothing was downloaded or overwritten: check the expected hash, or "
        "rename or delete the present file")
    files.behaviour.status_queue["/files/other.safetensors"] = [
        (403, {}, {"error": "internal: db password hunter2"})]
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": f"{files.base}/files/other.safetensors"})
    state = wait_for_job(http, answer["job_id"])
    assert "hunter2" not in state["error"] and "access denied (HTTP 403)" in state["error"]
    assert str(comfy.root) not in json.dumps(comfy.instance.events)


def test_a_pasted_token_is_hidden_in_state_and_events(http, comfy, files, monkeypatch):
    monkeypatch.setenv("KUBIK_HUB_ALLOW_PRIVATE", "1")
    source = f"{files.base}/files/model.safetensors?token={TOKEN}"
    status, answer = http("POST", "/kubik/hub/download",
                          json={"kind": "loras", "source": source, "client_id": "c1"})
    state = wait_for_job(http, answer["job_id"])
    assert state["state"] == "done"
    assert state["source"] == f"{files.base}/files/model.safetensors?token=***"
    assert state["warnings"] == ["a credential in the source's query string was hidden from what "
                                 "is shown and saved; set CIVITAI_API_TOKEN or HF_TOKEN instead "
                                 "of pasting tokens into URLs"]
    assert comfy.instance.events[-1][1]["warnings"] == state["warnings"]
    shown = json.dumps(state) + json.dumps(comfy.instance.events)
    shown += "".join(p.read_text() for p in (comfy.root / "models" / "loras").glob("*.json"))
    assert TOKEN not in shown


def test_a_full_job_pool_answers_429(http, comfy, files, monkeypatch):
    monkeypatch.setenv("KUBIK_HUB_ALLOW_PRIVATE", "1")
    monkeypatch.setattr(comfy.routes.JOBS, "max_running", 1)
    files.behaviour.delay_s["/files/model.safetensors"] = 1.5
    body = {"kind": "loras", "source": f"{files.base}/files/model.safetensors"}
    status, first = http("POST", "/kubik/hub/download", json=body)
    assert status == 200
    assert http("POST", "/kubik/hub/download", json={**body, "file_name": "b.safetensors"}) == (
        429, {"error": "the download pool is full (1 running, at most 1); wait for a download "
                       "to finish"})
    assert wait_for_job(http, first["job_id"])["state"] == "done"


# ------------------------------------------------------------------ GET routes
@pytest.mark.parametrize("path, params, status, message", [
    ("/kubik/hub/kinds", {"x": "1"}, 400, "'x': unknown field; this route takes no fields"),
    ("/kubik/hub/info", {}, 400, f"hash: required ({HASH_HINT})"),
    ("/kubik/hub/info", {"hash": "/etc/passwd"}, 400, f"hash: {HASH_HINT}"),
    ("/kubik/hub/info", {"hash": "/proc/self/environ"}, 400, f"hash: {HASH_HINT}"),
    ("/kubik/hub/info", {"hash": "g" * 64}, 400, f"hash: {HASH_HINT}"),
    ("/kubik/hub/info", {"hash": "ab" * 40}, 400, "hash: 80 characters is too long (at most 64)"),
    ("/kubik/hub/info", [("hash", "ab" * 32), ("hash", "cd" * 32)], 400, "hash: given more than once"),
    ("/kubik/hub/info", {"hash": "ab" * 32, "path": "x"}, 400,
     "'path': unknown field; this route takes hash"),
    ("/kubik/hub/search", {"limit": "0"}, 400, "limit: a whole number from 1 to 100"),
    ("/kubik/hub/search", {"limit": "101"}, 400, "limit: a whole number from 1 to 100"),
    ("/kubik/hub/search", {"limit": "abc"}, 400, "limit: a whole number from 1 to 100"),
    ("/kubik/hub/search", {"limit": "1000000"}, 400, "limit: 7 characters is too long (at most 3)"),
    ("/kubik/hub/search", {"hub": "gitlab"}, 400, "hub: 'gitlab' is not one of civitai, hf"),
    ("/kubik/hub/search", {"query": "q" * 201}, 400, "query: 201 characters is too long (at most 200)"),
    ("/kubik/hub/search", {"hub": "hf", "type": "LORA"}, 400, "type: applies to hub=civitai only"),
    ("/kubik/hub/search", {"filter": "lora"}, 400, "filter: applies to hub=hf only"),
    ("/kubik/hub/search", {"hub": "hf", "sort": "Newest"}, 400,
     "sort: 'Newest' is not a hf sort order; choose one of downloads, likes, last_modified, "
     "created_at, trending_score"),
    ("/kubik/hub/search", {"type": "LORA; DROP"}, 400,
     "type: a CivitAI model type such as LORA or Checkpoint"),
    ("/kubik/hub/jobs/xyz", {}, 400, "job_id: the 32-hex-digit id POST /kubik/hub/download returned"),
    ("/kubik/hub/jobs/" + "0" * 32, {}, 404,
     "job_id: no such download job (finished jobs are kept for a while only)"),
])
def test_get_route_corpus(http, files, path, params, status, message):
    assert http("GET", path, params=params) == (status, {"error": message})
    assert files.seen == []


def test_info_looks_up_a_hex_hash_and_never_a_local_file(http, hubs):
    # Short names of files that exist (a long path would be refused by the length cap first).
    for local in ("/etc/passwd", "/proc/self/environ"):
        assert http("GET", "/kubik/hub/info", params={"hash": local}) == (
            400, {"error": f"hash: {HASH_HINT}"})
    status, answer = http("GET", "/kubik/hub/info", params={"hash": SHA})
    assert status == 404
    assert answer == {"error": f"{hubs.base}/api/v1/model-versions/by-hash/{SHA}: not found "
                               "(HTTP 404) (Model not found)"}
    assert [s.path for s in hubs.seen] == [f"/api/v1/model-versions/by-hash/{SHA}"]


def test_search_with_the_largest_limit_reaches_the_hub(http, hubs):
    hubs.json["/api/v1/models"] = {"items": [], "metadata": {}}
    assert http("GET", "/kubik/hub/search", params={"query": "kbk", "limit": "100"}) == (
        200, {"results": []})
    assert hubs.requests_to("/api/v1/models")[0].query["limit"] == ["100"]


# ------------------------------------------------------------------ fuzz: each route's schema
FIELD_NAMES = ["kind", "source", "expected_sha256", "file_name", "client_id", "folder", ""]
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(max_size=40), st.sampled_from(["loras", "custom_nodes",
                                                               "civitai:1", "ab" * 32]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_clear(status: int, answer: dict, statuses: set[int]):
    assert status in statuses, (status, answer)
    if status != 200:
        assert set(answer) == {"error"} and answer["error"] and "\n" not in answer["error"]
        assert "Traceback" not in answer["error"]


@FUZZ
@given(body=st.one_of(st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8),
                                      JSON_VALUES, max_size=6), JSON_VALUES))
def test_fuzz_download_body(http, comfy, body):
    comfy.routes.JOBS.max_running = 0      # a valid body gets a 429: no download starts
    try:
        status, answer = http("POST", "/kubik/hub/download", data=json.dumps(body),
                              headers={"Content-Type": "application/json"})
    finally:
        comfy.routes.JOBS.max_running = 3
    assert_clear(status, answer, {400, 429})
    assert comfy.instance.events == [] and comfy.instance.publish_errors == []


@FUZZ
@given(raw=st.binary(max_size=300))
def test_fuzz_download_raw_bytes(http, comfy, raw):
    comfy.routes.JOBS.max_running = 0
    try:
        status, answer = http("POST", "/kubik/hub/download", data=raw,
                              headers={"Content-Type": "application/json"})
    finally:
        comfy.routes.JOBS.max_running = 3
    assert_clear(status, answer, {400, 429})


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["hub", "query", "limit", "type", "base_model",
                                                "sort", "filter", "x"]),
                              st.one_of(st.text(max_size=12), st.sampled_from(
                                  ["civitai", "hf", "20", "100", "Newest", "likes", "LORA"])),
                              max_size=5))
def test_fuzz_search_query(http, hubs, params):
    hubs.json["/api/v1/models"] = {"items": [], "metadata": {}}
    hubs.json["/api/models"] = []
    status, answer = http("GET", "/kubik/hub/search", params=params)
    assert_clear(status, answer, {200, 400})


@FUZZ
@given(value=st.one_of(st.text(max_size=80), st.sampled_from(["ab" * 32, "0A1B2C3D4E", "/etc"])))
def test_fuzz_info_query(http, value):
    status, answer = http("GET", "/kubik/hub/info", params={"hash": value})
    assert_clear(status, answer, {400, 404})


@FUZZ
@given(job_id=st.text(alphabet="0123456789abcdefxyzABC-_~", min_size=1, max_size=40))
def test_fuzz_job_id(http, job_id):
    status, answer = http("GET", f"/kubik/hub/jobs/{job_id}")
    assert_clear(status, answer, {400, 404})


# ------------------------------------------------------------------ the real ComfyUI
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_comfyui = pytest.mark.skipif(
    not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists(),
    reason="COMFYUI_DIR is not set to a ComfyUI checkout: the real-server route test is skipped")


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory):
    """The real ComfyUI with the pack installed; the hub's endpoints point at a local stand-in
    and KUBIK_HUB_ALLOW_PRIVATE is unset, so nothing leaves the machine."""
    from kubik_testing.comfy_server import ComfyServer
    from kubik_testing.pack import REPO

    with StandIn() as files, StandIn() as hubs:
        files.add_file("/files/model.safetensors", DATA)
        names = {"KUBIK_CIVITAI_BASE": f"{hubs.base}/api/v1", "HF_ENDPOINT": hubs.base,
                 "KUBIK_HUB_ALLOW_PRIVATE": None}
        saved = {name: os.environ.get(name) for name in names}
        for name, value in names.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        server = ComfyServer(Path(COMFYUI_DIR), REPO, tmp_path_factory.mktemp("comfyui"))
        try:
            server.start()
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        server.files = files
        yield server
        server.stop()


def send(server, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, data=body, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@needs_comfyui
@pytest.mark.integration
def test_the_real_comfyui_survives_hostile_requests(comfyui):
    log_start = len(comfyui.log())   # ComfyUI's own start-up may log missing optional packages
    dump = lambda value: json.dumps(value).encode()  # noqa: E731
    cases = [
        ("POST", "/kubik/hub/download", dump({"kind": "loras", "source": "civitai:1",
                                              "client_id": ["c1"]}),
         400, f"client_id: must be a string ({CLIENT_HINT}), not a list"),
        ("POST", "/kubik/hub/download", dump({"kind": "loras", "source": "civitai:1",
                                              "client_id": {"a": 1}}),
         400, f"client_id: must be a string ({CLIENT_HINT}), not an object"),
        ("POST", "/kubik/hub/download", dump({"kind": "custom_nodes", "source": "http://x/e.py",
                                              "file_name": "x.py"}),
         400, "kind: 'custom_nodes' is not a model folder"),
        ("POST", "/api/kubik/hub/download",
         b'{"kind": ' + b"[" * 2000 + b'"x"' + b"]" * 2000 + b', "source": "civitai:1"}',
         400, "body: JSON is nested 2001 levels deep (limit 4)"),
        ("POST", "/kubik/hub/download", b'{"kind": "' + b"x" * 5_000_000 + b'"}',
         400, "body: 5000012 bytes is too large (at most 16384)"),
        ("POST", "/kubik/hub/download", b"[" * 10_000, 400,
         "body: JSON is nested 10000 levels deep (limit 4)"),
        ("POST", "/kubik/hub/download", b'{"kind": "loras"}', 415,
         "body: send JSON with Content-Type: application/json"),
        ("GET", "/kubik/hub/info?hash=/etc/passwd", None, 400, f"hash: {HASH_HINT}"),
        ("GET", "/kubik/hub/search?limit=100000", None, 400,
         "limit: 6 characters is too long (at most 3)"),
        ("GET", "/kubik/hub/jobs/xyz", None, 400,
         "job_id: the 32-hex-digit id POST /kubik/hub/download returned"),
    ]
    for method, path, body, status, message in cases:
        content_type = "text/plain" if status == 415 else "application/json"
        got = send(comfyui, method, path, body, content_type)
        assert got == (status, {"error": message}), path
    # a download from a loopback URL: accepted as a job, refused by the default guard
    url = f"{comfyui.files.base}/files/model.safetensors"
    status, answer = send(comfyui, "POST", "/kubik/hub/download",
                          json.dumps({"kind": "loras", "source": url, "client_id": "c1"}).encode())
    assert status == 200
    for _ in range(200):
        status, state = send(comfyui, "GET", f"/kubik/hub/jobs/{answer['job_id']}")
        if state["state"] != "running":
            break
        time.sleep(0.1)
    assert state["state"] == "error" and state["error"].startswith(f"{url}: 127.0.0.1 {REFUSAL}")
    assert comfyui.files.seen == []
    # the server is alive and answers, and listed no code folder as a download target
    assert comfyui.get("/system_stats")["system"]
    kinds = comfyui.get("/kubik/hub/kinds")["kinds"]
    assert "loras" in kinds and not {"custom_nodes", "configs", "diffusers"} & set(kinds)
    assert comfyui.process.poll() is None
    assert "Traceback" not in comfyui.log()[log_start:]
