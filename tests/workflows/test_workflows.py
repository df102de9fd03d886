"""Every workflow in workflows/ (UI format) and workflows/api/ (API format) is valid offline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubik_testing.workflow_check import check_api, check_ui, check_workflow_file, load_signatures, ui_api_mismatch

REPO = Path(__file__).resolve().parents[2]
UI_FILES = sorted((REPO / "workflows").glob("*.json"))
API_FILES = sorted((REPO / "workflows" / "api").glob("*.json"))


@pytest.fixture(scope="module")
def sigs(node_classes):
    return load_signatures(node_classes)


def test_there_are_workflows():
    assert UI_FILES and API_FILES


@pytest.mark.parametrize("path", UI_FILES + API_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_workflow_is_valid(path, sigs):
    assert check_workflow_file(path, sigs) == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflow_has_api_twin(path):
    twin = REPO / "workflows" / "api" / path.name
    assert twin.exists(), f"{path.name} has no API-format twin in workflows/api/"
    assert ui_api_mismatch(json.loads(path.read_text()), json.loads(twin.read_text())) == []


# The checker itself must catch each kind of mistake.
def test_checker_rejects_unknown_node(sigs):
    assert "unknown node type" in check_api({"1": {"class_type": "NoSuchNode", "inputs": {}}}, sigs)[0]


def test_checker_rejects_wrong_link_type_and_bad_values(sigs):
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 7, "height": 512, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["1", 1], "seed": 0, "steps": 20, "cfg": 7.0, "sampler_name": "not_a_sampler",
            "scheduler": "karras", "positive": ["1", 0], "negative": ["1", 0],
            "latent_image": ["2", 0], "denoise": 1.0}},
    }
    problems = "\n".join(check_api(wf, sigs))
    assert "'model' (MODEL) linked to 'CLIP'" in problems
    assert "below the minimum" in problems          # width 7 < 16
    assert "not_a_sampler" in problems
    assert "'positive' (CONDITIONING) linked to 'MODEL'" in problems


def test_checker_rejects_bad_ui_widgets(sigs):
    wf = {"nodes": [{"id": 1, "type": "EmptyLatentImage", "inputs": [], "outputs": [],
                     "widgets_values": [512, 512]}], "links": []}
    assert "no widget value for 'batch_size'" in check_ui(wf, sigs)[0]
