"""The optimizer and explainer inside a real ComfyUI server (skipped without COMFYUI_DIR).

Checks what only a real server can: the sampler/scheduler outputs are accepted by KSampler's
link validation (list-typed sockets are compared by value), the Explain node's text reaches
the history as ``ui.text``, and a bad input reaches the user as an error naming it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


pytestmark = pytest.mark.integration

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
    pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the real-server test is skipped",
                allow_module_level=True)

OPTIMIZER = {"family": "sdxl", "priority": "balanced", "aspect_ratio": "16:9", "mode": "AUTO",
             "device": "cpu", "steps": 0, "cfg": 0.0, "sampler_name": "auto", "scheduler": "auto",
             "width": 0, "height": 0, "guidance": 0.0}


@pytest.fixture(scope="module")
def server(plain_comfy_server):
    return plain_comfy_server


def test_plan_and_explanation_through_the_queue(server):
    workflow = {
        "1": {"class_type": "KubikParameterOptimizer", "inputs": OPTIMIZER},
        "2": {"class_type": "KubikExplain", "inputs": {"verbosity": "detailed", "plan": ["1", 0]}},
    }
    entry = server.queue(workflow)
    assert entry["status"]["status_str"] == "success", entry["status"]["messages"]
    text = entry["outputs"]["2"]["text"][0]
    assert "sdxl" in text and "1344x768" in text


def test_outputs_link_into_ksampler_and_empty_latent(server):
    """With a missing checkpoint /prompt refuses the graph, but only for the loader: KSampler's
    sampler/scheduler links from the optimizer pass ComfyUI's type check."""
    workflow = {
        "1": {"class_type": "KubikParameterOptimizer", "inputs": OPTIMIZER},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": ["1", 5], "height": ["1", 6], "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": 1, "steps": ["1", 1], "cfg": ["1", 2], "sampler_name": ["1", 3],
            "scheduler": ["1", 4], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0],
            "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    status, answer = server.post("/prompt", {"prompt": workflow, "client_id": "kubik-params"})
    assert status == 400
    errors = answer["node_errors"]
    mismatches = [e for node in errors.values() for e in node["errors"] if e["type"] == "return_type_mismatch"]
    assert not mismatches, mismatches
    assert "4" in errors  # the missing checkpoint, and nothing about our links
    # control: the same check does catch a wrong link (the plan into sampler_name)
    workflow["3"]["inputs"]["sampler_name"] = ["1", 0]
    status, answer = server.post("/prompt", {"prompt": workflow, "client_id": "kubik-params"})
    wrong = [e for e in answer["node_errors"].get("3", {}).get("errors", []) if e["type"] == "return_type_mismatch"]
    assert status == 400 and wrong and "sampler_name" in wrong[0]["details"]


def test_auto_family_without_model_is_a_clear_error(server):
    workflow = {
        "1": {"class_type": "KubikParameterOptimizer", "inputs": {**OPTIMIZER, "family": "auto"}},
        "2": {"class_type": "KubikExplain", "inputs": {"verbosity": "minimal", "plan": ["1", 0]}},
    }
    entry = server.queue(workflow)
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["exception_message"].startswith("family: 'auto' needs a MODEL")
