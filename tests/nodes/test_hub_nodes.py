"""The Kubik Model Download node and the /kubik/hub routes, run as ComfyUI runs them.

ComfyUI's ``folder_paths`` and ``server`` modules are outside the project: inside the tests a
small stand-in module of each takes their place in ``sys.modules``, as ComfyUI's would be.
"""
from __future__ import annotations

import asyncio
import sys

import pytest

from comfy_stand_ins import PromptServerStandIn, app_for, folder_paths_module, server_module
from hub_stand_ins import CIVITAI_TOKEN, ENV_DATA as DATA, ENV_SHA as SHA


@pytest.fixture
def comfy_folders(monkeypatch, tmp_path):
    """A stand-in for ComfyUI's folder_paths with loras/checkpoints under tmp/models."""
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths_module(tmp_path))
    return tmp_path / "models"


def test_node_needs_comfyui_folders_and_says_what_to_do(run_node, hub_env):
    with pytest.raises(RuntimeError, match="kind: .*kubik hub download"):
        run_node("KubikModelDownload", kind="loras", source="civitai:456")


def test_node_lists_model_kinds_common_first(node_classes, comfy_folders):
    kinds = node_classes["KubikModelDownload"].INPUT_TYPES()["required"]["kind"][0]
    # configs (.yaml), diffusers (folders) and custom_nodes (code) are never download targets;
    # classifiers lists no model extension in core ComfyUI and gets the safe formats.
    assert kinds == ["loras", "checkpoints", "classifiers", "kubik3d"]


def test_node_downloads_into_the_kind_folder(run_node, hub_env, comfy_folders):
    name, sha = run_node("KubikModelDownload", kind="loras", source="civitai:456",
                         expected_sha256="", file_name="")
    assert (name, sha) == ("kbk_style.safetensors", SHA)
    assert (comfy_folders / "loras" / name).read_bytes() == DATA
    assert (comfy_folders / "loras" / "kbk_style.civitai.info").is_file()
    # a second run finds the verified file and downloads nothing
    before = len(hub_env.seen)
    assert run_node("KubikModelDownload", kind="loras", source="civitai:456") == (name, sha)
    assert not [s for s in hub_env.seen[before:] if "download" in s.path]


@pytest.mark.parametrize("inputs, message", [
    ({"source": "   "}, r"^source: empty"),
    ({"source": "ftp://example.com/x.safetensors"}, r"^source 'ftp://"),
    ({"source": "civitai:456", "expected_sha256": "nothex"}, r"^expected_sha256: "),
    ({"source": "civitai:456", "file_name": "../evil.exe"}, r"^file_name: .*\.safetensors"),
    ({"source": "civitai:999"}, r"^source 'civitai:999': .*not found"),
])
def test_node_errors_name_the_input(run_node, hub_env, comfy_folders, inputs, message):
    with pytest.raises((ValueError, RuntimeError), match=message):
        run_node("KubikModelDownload", kind="loras", **inputs)
    assert not (comfy_folders / "loras").exists() or not list((comfy_folders / "loras").iterdir())


@pytest.mark.parametrize("kind, file_name, message", [
    ("custom_nodes", "", r"^kind: 'custom_nodes' is not a model folder$"),
    ("configs", "", r"^kind: 'configs' is not a model folder$"),
    ("loras", "evil.py", r"^file_name: file name 'evil\.py': this model folder takes only \.bin, "
                         r"\.ckpt, \.pt, \.pt2, \.pth, \.safetensors, \.sft files"),
])
def test_node_never_writes_code_or_outside_model_folders(run_node, hub_env, comfy_folders, kind,
                                                         file_name, message):
    with pytest.raises(ValueError, match=message):
        run_node("KubikModelDownload", kind=kind, source="civitai:456", file_name=file_name)
    root = comfy_folders.parent
    assert not (root / "custom_nodes").exists() and not (comfy_folders / "loras").exists()
    assert not [s for s in hub_env.seen if "download" in s.path]


@pytest.fixture
def comfy_server(monkeypatch):
    """A stand-in for ComfyUI's ``server`` module: PromptServer.instance with routes and send_sync."""
    instance = PromptServerStandIn()
    monkeypatch.setitem(sys.modules, "server", server_module(instance))
    return instance


def _routes(pack):
    return sys.modules[f"{pack.__name__}.nodes.routes"]


def test_routes_register_only_inside_comfyui(pack):
    assert _routes(pack).register_routes() is False


def test_routes_search_info_and_download_with_progress_events(pack, comfy_server, hub_env,
                                                               comfy_folders):
    from aiohttp.test_utils import TestClient, TestServer

    module = _routes(pack)
    assert module.register_routes() is True
    hub_env.json["/api/v1/models"] = {"items": [{"id": 123, "name": "Test", "type": "LORA",
                                                 "modelVersions": [{"id": 456}]}],
                                      "metadata": {}}

    async def scenario():
        async with TestClient(TestServer(app_for(comfy_server))) as client:
            kinds = await (await client.get("/kubik/hub/kinds")).json()
            found = await (await client.get("/kubik/hub/search", params={"query": "kbk"})).json()
            missing = await client.get("/kubik/hub/info", params={"hash": "ab" * 32})
            bad = await client.post("/kubik/hub/download", json={"kind": "nope", "source": "civitai:456"})
            started = await client.post("/kubik/hub/download",
                                        json={"kind": "loras", "source": "civitai:456", "client_id": "c1"})
            job_id = (await started.json())["job_id"]
            state = {}
            for _ in range(200):   # bounded wait for the download thread (up to ~10 s)
                state = await (await client.get(f"/kubik/hub/jobs/{job_id}")).json()
                if state["state"] != "running":
                    break
                await asyncio.sleep(0.05)
            return kinds, found, missing.status, await missing.json(), bad.status, state

    kinds, found, missing_status, missing_body, bad_status, state = asyncio.run(scenario())
    assert kinds["kinds"][0] == "loras"
    assert found["results"][0]["source_string"] == "civitai:456"
    assert missing_status == 404 and "not found" in missing_body["error"]
    assert bad_status == 400
    assert state["state"] == "done" and state["result"]["sha256"] == SHA
    assert (comfy_folders / "loras" / "kbk_style.safetensors").read_bytes() == DATA
    events = [(event, data.get("job_id"), sid) for event, data, sid in comfy_server.events]
    assert ("kubik.hub.done", state["job_id"], "c1") in events
    assert any(event == "kubik.hub.progress" and sid == "c1" for event, _, sid in events)
    assert CIVITAI_TOKEN not in repr(comfy_server.events)
