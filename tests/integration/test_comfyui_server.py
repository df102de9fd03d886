"""The pack inside a real ComfyUI server: it imports cleanly, /object_info lists every Kubik node
with its tooltips, and the API workflows that need no model file run through the HTTP queue.

Needs a ComfyUI checkout in COMFYUI_DIR (and its requirements importable by COMFYUI_PYTHON or
this Python); skipped otherwise.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubik_testing.pack import REPO
from kubik_testing.comfy_server import PACK_FOLDER

pytestmark = pytest.mark.integration

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
    pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the real-server test is skipped",
                allow_module_level=True)

API_WORKFLOWS = sorted((REPO / "workflows" / "api").glob("*.json"))


@pytest.fixture(scope="module")
def server(plain_comfy_server):
    # The input folder stays empty: the templates must run whatever it holds (issue 16).
    assert not [p for p in plain_comfy_server.input_dir.rglob("*") if p.is_file()]
    return plain_comfy_server


def test_pack_imports_cleanly(server):
    pack_lines = [line for line in server.log().splitlines() if PACK_FOLDER in line]
    failures = [line for line in pack_lines if "IMPORT FAILED" in line or "Cannot import" in line]
    assert not failures, "\n".join(failures) + "\n" + server.log()[-3000:]


def test_object_info_lists_every_node_with_tooltips(server, node_classes):
    info = server.get("/object_info")
    missing = sorted(set(node_classes) - set(info))
    assert not missing, f"ComfyUI does not list: {missing}"
    for node_id in node_classes:
        entry = info[node_id]
        assert entry["category"].startswith("KubikAI/")
        for category in ("required", "optional"):
            for name, spec in (entry["input"].get(category) or {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} shows no tooltip"
        assert len(entry.get("output_tooltips") or []) == len(entry["output"]), f"{node_id}: output tooltips"


def _missing_files(workflow: dict, object_info: dict) -> list[str]:
    """File-list inputs (checkpoints, LoRAs, classifiers, images) whose value the server lacks."""
    missing = []
    for node in workflow.values():
        spec = object_info[node["class_type"]]["input"]
        for name, value in node["inputs"].items():
            declared = (spec.get("required") or {}).get(name) or (spec.get("optional") or {}).get(name)
            if declared and isinstance(declared[0], list) and isinstance(value, str) \
                    and value.endswith((".safetensors", ".ckpt", ".pt", ".png", ".jpg")) \
                    and value not in declared[0]:
                missing.append(f"{node['class_type']}.{name}={value}")
    return missing


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.name)
def test_api_workflow_runs(server, path):
    workflow = json.loads(path.read_text())
    missing = _missing_files(workflow, server.get("/object_info"))
    # Only models the user downloads once for ComfyUI itself (a checkpoint, a ControlNet, a CLIP
    # vision encoder) may be theirs to supply; pictures and the pack's own models ship with it.
    assert all(m.startswith(("CheckpointLoaderSimple.ckpt_name=", "ControlNetLoader.control_net_name=",
                             "CLIPVisionLoader.clip_name=")) for m in missing), missing
    if missing:
        pytest.skip(f"{path.name} needs files the test server does not have: {', '.join(missing)}")
    entry = server.queue(workflow)
    status = entry["status"]
    assert status["status_str"] == "success", json.dumps(status["messages"])[:3000]
    assert entry["outputs"], f"{path.name} produced no output"


def test_bad_input_gives_clear_error(server, node_classes):
    """An empty prompt reaches the user as an execution error that names the input."""
    workflow = {
        "1": {"class_type": "KubikPromptAnalyzer",
              "inputs": _widget_defaults(node_classes["KubikPromptAnalyzer"], prompt="   ")},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 3]}},
    }
    entry = server.queue(workflow)
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "prompt" in errors[0]["exception_message"].lower()


def _widget_defaults(cls, **overrides) -> dict:
    """The values a freshly added node has in the editor, with some replaced."""
    values = {}
    for category in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(category, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            if "default" in options:
                values[name] = options["default"]
            elif isinstance(kind, list):
                values[name] = kind[0]
    values.update(overrides)
    return values
