"""`kubik consistency` on real photo files with tiny random-weight encoders saved as local
folders: the JSON report (printed and --out), the text summary, a whole-CLIP folder with its
preprocessor config, and mask files. What the scores mean is tested in test_calibration.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kubik_core.cli import main
from kubik_testing.tiny_vision import tiny_clip, tiny_dinov2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("consistency")
    cat = data.chelsea()
    (root / "refs").mkdir()
    for name, picture in {"cat.png": cat, "cat_mirror.png": cat[:, ::-1], "cat_flip.png": cat[::-1]}.items():
        Image.fromarray(np.ascontiguousarray(picture)).save(root / "refs" / name)
    (root / "negs").mkdir()
    Image.fromarray(data.astronaut()).save(root / "negs" / "astronaut.png")
    Image.fromarray(data.rocket()).save(root / "negs" / "rocket.jpg")
    Image.fromarray(data.coffee()).save(root / "coffee.jpg")
    Image.fromarray(np.ascontiguousarray(cat[20:280, 40:400])).save(root / "cat_crop.png")
    tiny_dinov2(root / "dino")
    tiny_clip(root / "clip")
    return root


def _run(capsys, *args) -> tuple[int, str, str]:
    status = main(["consistency", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_report_printed_and_written(files, capsys, tmp_path):
    out_file = tmp_path / "report.json"
    status, out, err = _run(capsys, "--references", files / "refs", "--images", files / "cat_crop.png",
                            files / "coffee.jpg", "--negatives", files / "negs", "--encoder", files / "dino",
                            "--device", "cpu", "--json", "--out", out_file)
    assert status == 0, err
    report = json.loads(out)
    assert json.loads(out_file.read_text()) == report
    assert [row["name"] for row in report["images"]] == [str(files / "cat_crop.png"), str(files / "coffee.jpg")]
    assert [r["name"].rsplit("/", 1)[1] for r in report["references"]] == ["cat.png", "cat_flip.png",
                                                                           "cat_mirror.png"]
    assert len(report["negatives"]) == 2 and report["total"] == 2
    c = report["calibration"]
    assert c["method"] in ("midpoint", "equal_error") and len(c["loo_scores"]) == 3
    assert c["negative_high"] == pytest.approx(np.quantile(c["negative_scores"], 0.9), abs=1e-5)
    assert report["passed"] == sum(row["score"] >= report["threshold"] for row in report["images"])
    assert all(row["passed"] == (row["score"] >= report["threshold"]) for row in report["images"])


def test_text_summary_with_a_whole_clip_folder(files, capsys, tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    for name in ("config.json", "model.safetensors"):
        (clip / name).write_bytes((files / "clip" / name).read_bytes())
    (clip / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "crop_size": {"height": 32, "width": 32}}))
    status, out, err = _run(capsys, "--references", files / "refs", "--images", files / "coffee.jpg",
                            "--encoder", clip / "model.safetensors", "--device", "cpu", "--crop", "center")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[0] in ("PASS", "FAIL") and lines[0].endswith("coffee.jpg")
    assert "(references_only; encoder CLIP vision clip, crop center)" in lines[1]
    assert lines[2].startswith("references (3), leave-one-out: ")
    assert "note: no negative control" in out


def test_mask_files_set_the_crop(files, capsys, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.zeros((400, 600), np.uint8)     # coffee.jpg is 600 x 400
    mask[100:200, 150:250] = 255
    Image.fromarray(mask).save(masks / "coffee.png")
    status, out, err = _run(capsys, "--references", files / "refs", "--images", files / "coffee.jpg",
                            files / "cat_crop.png", "--encoder", files / "dino", "--device", "cpu",
                            "--masks", masks, "--json", "--threshold", "0.5")
    assert status == 0, err
    rows = json.loads(out)["images"]
    assert rows[0]["crop"] == "mask" and rows[0]["box"] == [140, 90, 260, 210]
    assert rows[1]["crop"] in ("saliency", "center")          # no mask file: the smart crop
    assert json.loads(out)["calibration"]["method"] == "user"
