"""Every workflow in workflows/ (UI format) and workflows/api/ (API format) is valid, and each UI
file opens in ComfyUI's editor with exactly its API twin's values.

Widget values are positional in UI files; they are checked against the widgets the editor builds
(``editor_widgets``: the node definitions plus the frontend's own "control after generate",
upload and extension widgets). The node definitions come from the pack's INPUT_TYPES and
core_nodes.json, and, when COMFYUI_DIR points at a ComfyUI checkout, also from a real server's
/object_info.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubik_testing.workflow_check import (check_api, check_ui, check_widget_values, check_workflow_file,
                                          editor_widgets, load_signatures, object_info_signatures,
                                          ui_api_mismatch)

REPO = Path(__file__).resolve().parents[2]
UI_FILES = sorted((REPO / "workflows").glob("*.json"))
API_FILES = sorted((REPO / "workflows" / "api").glob("*.json"))
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")


@pytest.fixture(scope="module", params=["pack", "object_info"])
def sigs(request, node_classes):
    """Node signatures from the pack and core_nodes.json, or from a real server's /object_info."""
    if request.param == "pack":
        return load_signatures(node_classes)
    if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: checked against core_nodes.json only")
    return object_info_signatures(request.getfixturevalue("plain_comfy_server").get("/object_info"))


@pytest.fixture(scope="module")
def pack_sigs(node_classes):
    return load_signatures(node_classes)


def test_there_are_workflows():
    assert UI_FILES and API_FILES
    assert [p.name for p in UI_FILES] == [p.name for p in API_FILES], "each UI file has an API twin"


@pytest.mark.parametrize("path", UI_FILES + API_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_workflow_is_valid(path, sigs):
    assert check_workflow_file(path, sigs) == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflow_opens_with_its_api_twins_values(path, sigs):
    twin = REPO / "workflows" / "api" / path.name
    assert ui_api_mismatch(json.loads(path.read_text()), json.loads(twin.read_text()), sigs) == []


def test_ui_files_are_made_from_the_current_node_definitions():
    """A node's inputs changed, or an API file: the generator must be re-run."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "workflow_ui_from_api.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_nodes_do_not_overlap(path):
    """Node boxes (title bar included) are apart, also for nodes that grow with text after a run."""
    boxes = [(n["title"] if "title" in n else n["type"], n["pos"][0], n["pos"][1] - 30, n["size"][0], n["size"][1] + 30)
             for n in json.loads(path.read_text())["nodes"]]
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1:]:
            assert not (ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah), f"{a} overlaps {b}"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_every_template_has_its_thumbnail(path):
    """The template dialog fetches <name>.jpg from the pack's workflows/ folder (a 404 and a
    console error otherwise); scripts/workflow_thumbnails.py draws them from what each one does."""
    from PIL import Image, ImageStat

    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.exists(), f"{thumbnail.name} is missing: run scripts/workflow_thumbnails.py"
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (512, 512)
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 20, "a blank picture, not a thumbnail"


# The checker itself must catch each kind of mistake.
def test_checker_rejects_unknown_node(pack_sigs):
    assert "unknown node type" in check_api({"1": {"class_type": "NoSuchNode", "inputs": {}}}, pack_sigs)[0]


def test_checker_rejects_wrong_link_type_and_bad_values(pack_sigs):
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 7, "height": 512, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["1", 1], "seed": 0, "steps": 20, "cfg": 7.0, "sampler_name": "not_a_sampler",
            "scheduler": "karras", "positive": ["1", 0], "negative": ["1", 0],
            "latent_image": ["2", 0], "denoise": 1.0}},
    }
    problems = "\n".join(check_api(wf, pack_sigs))
    assert "'model' (MODEL) linked to 'CLIP'" in problems
    assert "below the minimum" in problems          # width 7 < 16
    assert "not_a_sampler" in problems
    assert "'positive' (CONDITIONING) linked to 'MODEL'" in problems


def test_checker_rejects_bad_ui_widgets(pack_sigs):
    wf = {"nodes": [{"id": 1, "type": "EmptyLatentImage", "inputs": [], "outputs": [],
                     "widgets_values": [512, 512]}], "links": []}
    assert check_ui(wf, pack_sigs) == [
        "node 1 (EmptyLatentImage): 2 widget values for 3 widgets ['width', 'height', 'batch_size']: [512, 512]"]


def test_editor_widgets_follow_the_frontends_rules(pack_sigs):
    def names(cls):
        return [(w.name, w.default) if w.kind != "input" else w.name for w in editor_widgets(cls, pack_sigs[cls])]

    assert names("KSampler") == ["seed", ("control_after_generate", "randomize"), "steps", "cfg",
                                 "sampler_name", "scheduler", "denoise"]
    # an INT named seed gets a control without declaring one; forceInput inputs get no widget
    assert names("KubikPromptAnalyzer")[2:4] == ["seed", ("control_after_generate", "randomize")]
    assert "generation_id" not in names("KubikFeedback")
    assert names("LoadImage") == ["image", ("upload", "image")]
    assert names("Preview3D") == ["model_file", ("image", "")]
    assert names("PreviewAny") == [("previewMode", False)]

    def sig(**spec):
        return {"input_order": ["x"], "inputs": {"x": {"category": "required", **spec}}}

    assert [w.name for w in editor_widgets("N", sig(type="INT", control_after_generate=True))] == \
        ["x", "control_after_generate"]
    seed = {"input_order": ["seed"], "inputs": {"seed": {"category": "required", "type": "INT",
                                                         "control_after_generate": False}}}
    assert [w.name for w in editor_widgets("N", seed)] == ["seed"]  # declared off: no control
    assert [(w.name, w.default) for w in editor_widgets("N", sig(type="FLOAT", control_after_generate=True))] == \
        [("x", 0.0), ("control_after_generate", "fixed")]
    assert [(w.name, w.default) for w in editor_widgets("N", sig(type="COMBO", options=["a", "b"],
                                                                 control_after_generate=True))] == \
        [("x", "a"), ("control_after_generate", "randomize"), ("control_filter_list", "")]
    assert editor_widgets("N", sig(type="STRING", forceInput=True)) == []


def test_checker_sees_the_shift_of_the_old_templates(pack_sigs):
    """The Prompt Analyzer as the templates had it before issue 16: no value after the seed, so
    every later widget took its neighbour's value (wildcards folder false, use_ollama the URL)."""
    old = ["a photo", "comfyui", 0, "", False, "http://127.0.0.1:11434", "llama3.2", 10.0]
    problems = check_widget_values("KubikPromptAnalyzer", pack_sigs["KubikPromptAnalyzer"], old)
    assert problems[0].startswith("8 widget values for 9 widgets")
    assert "widget 'wildcards_folder': False is not a string" in problems
    assert "widget 'use_ollama': 'http://127.0.0.1:11434' is not a boolean" in problems
    ui = {"nodes": [{"id": 2, "type": "KubikPromptAnalyzer", "inputs": [], "outputs": [], "widgets_values": old}],
          "links": []}
    api = {"2": {"class_type": "KubikPromptAnalyzer", "inputs": dict(zip(
        ["prompt", "dialect", "seed", "wildcards_folder", "use_ollama", "ollama_url", "ollama_model",
         "ollama_timeout"], old))}}
    mismatch = "\n".join(ui_api_mismatch(ui, api, pack_sigs))
    assert "input 'use_ollama' is False in the API file, the editor shows 'http://127.0.0.1:11434'" in mismatch
    assert "input 'ollama_model' is 'llama3.2' in the API file, the editor shows 10.0" in mismatch


def test_checker_sees_values_the_editor_would_drop_as_legacy(pack_sigs):
    """A value for a forceInput input (as files before frontend 1.16 kept) makes the editor drop
    values by position; the checker names it."""
    problems = check_widget_values("KubikApplyLoraStack", pack_sigs["KubikApplyLoraStack"], [True, "a prompt"])
    assert any("would read these values as an old file's" in p for p in problems)


def test_checker_wants_seeds_fixed_and_links_as_in_the_twin(pack_sigs):
    api = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
           "2": {"class_type": "KSampler", "inputs": {
               "model": ["9", 0], "seed": 5, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
               "scheduler": "karras", "positive": ["9", 0], "negative": ["9", 0],
               "latent_image": ["1", 0], "denoise": 1.0}}}
    ui = {"nodes": [
        {"id": 1, "type": "EmptyLatentImage", "inputs": [], "widgets_values": [512, 512, 1]},
        {"id": 2, "type": "KSampler", "inputs": [{"name": "latent_image", "link": None}],
         "widgets_values": [5, "randomize", 20, 7.0, "euler", "karras", 1.0]}], "links": []}
    problems = "\n".join(ui_api_mismatch(ui, api, pack_sigs))
    assert "node 2 (KSampler): the control after generate is 'randomize'" in problems
    assert "input 'latent_image' is linked from ['1', 0] in the API file, from nothing in the UI file" in problems
