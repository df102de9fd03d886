"""Kubik Consistency: filters a batch by the calibrated threshold, crops to a mask, takes a
transformers encoder folder from the clip_vision folder or ComfyUI's own CLIP_VISION model, and
runs inside a real ComfyUI server (skipped without COMFYUI_DIR).

The encoders are tiny random-weight models (tests/kubik_testing/tiny_vision.py): these tests
check the node's mechanics; tests/consistency/test_calibration.py checks what the scores mean.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kubik_testing.pack import REPO
from kubik_testing.tiny_vision import tiny_clip_vision, tiny_dinov2

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_comfyui = pytest.mark.skipif(not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists(),
                                   reason="COMFYUI_DIR is not set to a ComfyUI checkout")


@pytest.fixture(scope="module")
def encoders_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clip_vision")
    tiny_dinov2(root / "tiny-dino")
    tiny_clip_vision(root / "family" / "tiny-clip")
    return root


@pytest.fixture
def encoders(encoders_dir, monkeypatch) -> Path:
    monkeypatch.setenv("KUBIK_IMAGE_ENCODERS_DIR", str(encoders_dir))
    return encoders_dir


def _photos():
    from skimage import data

    cat = torch.from_numpy(data.chelsea()).float() / 255          # 300 x 451
    coffee = torch.from_numpy(data.coffee()[:300, :451].copy()).float() / 255
    return cat, coffee


def test_node_lists_encoder_folders_and_filters_the_batch(run_node, node_classes, encoders):
    choices = node_classes["KubikConsistency"].INPUT_TYPES()["required"]["encoder"][0]
    assert choices == ["clip_vision input", "family/tiny-clip", "tiny-dino"]
    cat, coffee = _photos()
    references = torch.stack([cat, cat.flip(1), cat.flip(0)])
    images = torch.stack([coffee, cat, coffee.flip(1)])
    out = run_node("KubikConsistency", images=images, references=references, encoder="tiny-dino",
                   crop="smart", threshold=0.0, negatives=torch.stack([coffee.flip(0)]))
    passing, scores, threshold, report = out["result"]
    report = json.loads(report)
    assert len(scores) == 3 and report["threshold"] == pytest.approx(threshold, abs=1e-6)
    passed = [s >= threshold for s in scores]
    assert [row["passed"] for row in report["images"]] == passed
    assert passing.shape[0] == sum(passed)
    kept = [images[i] for i in range(3) if passed[i]]
    assert all(torch.equal(a, b) for a, b in zip(passing, kept))
    calibration = report["calibration"]
    assert calibration["method"] in ("midpoint", "equal_error") and len(calibration["loo_scores"]) == 3
    assert len(calibration["negative_scores"]) == 1 and report["encoder"] == "DINOv2 tiny-dino"
    assert "threshold" in out["ui"]["text"][0]


def test_node_user_threshold_and_empty_result(run_node, encoders):
    cat, coffee = _photos()
    out = run_node("KubikConsistency", images=torch.stack([coffee]), references=torch.stack([cat, cat.flip(1)]),
                   encoder="family/tiny-clip", crop="center", threshold=1.0)
    passing, scores, threshold, report = out["result"]
    assert threshold == 1.0 and scores[0] < 1.0 and passing.shape == (0, 300, 451, 3)
    report = json.loads(report)
    assert report["calibration"]["method"] == "user"
    assert report["calibration"]["calibrated_threshold"] != 1.0
    assert report["encoder"] == "CLIP vision family/tiny-clip"


def test_node_crops_to_the_mask(run_node, encoders):
    cat, coffee = _photos()
    mask = torch.zeros(2, 300, 451)
    mask[0, 100:150, 200:260] = 1.0   # a box: cropped around it
    out = run_node("KubikConsistency", images=torch.stack([cat, coffee]), references=torch.stack([cat, coffee]),
                   encoder="tiny-dino", crop="none", threshold=0.0, mask=mask)
    rows = json.loads(out["result"][3])["images"]
    assert rows[0]["crop"] == "mask"
    left, top, right, bottom = rows[0]["box"]
    assert right - left == bottom - top == 72       # 60 px wide box, squared, plus 10 % each side
    assert left <= 200 and right >= 260 and top <= 100 and bottom >= 150
    assert rows[1]["crop"] == "whole (mask empty)" and rows[1]["box"] == [0, 0, 451, 300]


def test_node_scores_with_comfyuis_clip_vision(tmp_path):
    """ComfyUI's own ClipVisionModel class, as Load CLIP Vision hands it over, in a ComfyUI process
    of its own (importing comfy here would make every later test think it runs inside ComfyUI)."""
    if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout")
    script = tmp_path / "run.py"
    script.write_text(f"""
import json, sys
sys.path[:0] = [{str(COMFYUI_DIR)!r}, {str(REPO / "tests")!r}]
sys.argv = ["main.py", "--cpu"]   # ComfyUI's own argument parsing, on the CPU as the test server
import comfy.options
comfy.options.enable_args_parsing()
from pathlib import Path
import torch
from kubik_testing.pack import load_pack
from kubik_testing.tiny_vision import comfy_clip_vision
clip_vision = comfy_clip_vision(Path({str(tmp_path)!r}))
pack = load_pack(Path({str(tmp_path)!r}))
node = pack.NODE_CLASS_MAPPINGS["KubikConsistency"]()
from skimage import data
cat = torch.from_numpy(data.chelsea()).float() / 255
out = node.score(torch.stack([cat, cat.flip(0)]), torch.stack([cat, cat.flip(1), cat.flip(0)]),
                 "clip_vision input", "smart", 0.0, clip_vision=clip_vision)
print(json.dumps({{"scores": out["result"][1], "report": json.loads(out["result"][3])}}))
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["report"]["encoder"] == "ComfyUI CLIP_VISION" and len(result["scores"]) == 2
    assert all(-1.0 <= s <= 1.0 for s in result["scores"])
    assert result["report"]["images"][0]["score"] > 0.99   # a reference itself, against their mean


@needs_comfyui
@pytest.mark.integration
def test_node_runs_in_a_real_comfyui(plain_comfy_server, encoders_dir):
    """Listed and run by ComfyUI's executor: the encoder folder sits in models/clip_vision (of the
    session's shared server, put there for this test only)."""
    import shutil

    server = plain_comfy_server
    shutil.copytree(encoders_dir / "tiny-dino", server.models_dir / "clip_vision" / "tiny-dino")
    try:
        info = server.get("/object_info/KubikConsistency")["KubikConsistency"]
        assert "tiny-dino" in info["input"]["required"]["encoder"][0]
        workflow = {
            "1": {"class_type": "KubikExampleImage", "inputs": {"picture": "shape_blob.png"}},
            "2": {"class_type": "KubikExampleImage", "inputs": {"picture": "shape_box.png"}},
            "3": {"class_type": "KubikExampleImage", "inputs": {"picture": "photo_coffee.jpg"}},
            "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
            "5": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["3", 0]}},
            "6": {"class_type": "KubikConsistency", "inputs": {
                "images": ["5", 0], "references": ["4", 0], "encoder": "tiny-dino", "crop": "smart",
                "threshold": 0.0}},
            "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 3]}},
        }
        entry = server.queue(workflow)
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"])[:3000]
        report = json.loads(entry["outputs"]["7"]["text"][0])
        assert report["total"] == 2 and report["calibration"]["method"] == "references_only"
        assert "PASS" in entry["outputs"]["6"]["text"][0] or "FAIL" in entry["outputs"]["6"]["text"][0]
        workflow["6"]["inputs"]["encoder"] = "clip_vision input"
        entry = server.queue(workflow)
        errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
        assert errors and errors[0]["exception_message"].startswith(
            "clip_vision: encoder is 'clip_vision input' but nothing is connected")
    finally:
        shutil.rmtree(server.models_dir / "clip_vision" / "tiny-dino")
