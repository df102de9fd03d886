"""`kubik consistency --character NAME` on a real registry (written by `kubik characters add`) with
real photo files in an input folder and a tiny random-weight DINOv2 folder: the preset's pictures
are the references, `--save-threshold` stores the calibrated threshold that `kubik characters show`
then shows and the next run uses; bad presets and registries give one line and change nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kubik_core.cli import main
from kubik_testing.tiny_vision import tiny_dinov2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("character")
    cat = data.chelsea()
    (root / "input" / "mira").mkdir(parents=True)
    for name, picture in {"front.png": cat, "mirror.png": cat[:, ::-1], "flip.png": cat[::-1]}.items():
        Image.fromarray(np.ascontiguousarray(picture)).save(root / "input" / "mira" / name)
    (root / "negs").mkdir()
    Image.fromarray(data.astronaut()).save(root / "negs" / "astronaut.png")
    Image.fromarray(data.rocket()).save(root / "negs" / "rocket.jpg")
    Image.fromarray(np.ascontiguousarray(cat[20:280, 40:400])).save(root / "cat_crop.png")
    Image.fromarray(data.coffee()).save(root / "coffee.jpg")
    tiny_dinov2(root / "dino")
    return root


@pytest.fixture
def registry(files, tmp_path, monkeypatch, capsys):
    """A registry holding Mira (three pictures) and Solo (one), made as a user makes them."""
    path = tmp_path / "characters.json"
    monkeypatch.setenv("KUBIK_CHARACTERS_FILE", str(path))
    monkeypatch.setenv("KUBIK_INPUT_DIR", str(files / "input"))
    assert main(["characters", "add", "Mira", "--trigger", "mira_oc", "--reference", "mira/front.png",
                 "--reference", "mira/mirror.png", "--reference", "mira/flip.png"]) == 0
    assert main(["characters", "add", "Solo", "--reference", "mira/front.png"]) == 0
    capsys.readouterr()
    return path


def _run(capsys, files, *args):
    status = main(["consistency", "--images", str(files / "cat_crop.png"), str(files / "coffee.jpg"),
                   "--encoder", str(files / "dino"), "--device", "cpu", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_save_threshold_then_use_it(files, registry, capsys):
    status, out, err = _run(capsys, files, "--character", "mira", "--negatives", files / "negs",
                            "--save-threshold", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert [r["name"] for r in report["references"]] == [str(files / "input" / "mira" / n)
                                                         for n in ("front.png", "mirror.png", "flip.png")]
    calibrated = report["calibration"]["calibrated_threshold"]
    assert report["calibration"]["method"] in ("midpoint", "equal_error") and 0 < calibrated <= 1
    assert report["character"] == {"name": "Mira", "threshold_from": "calibrated", "saved_threshold": calibrated}
    stored = json.loads(registry.read_text())["characters"][0]
    assert stored["name"] == "Mira" and stored["threshold"] == calibrated
    assert main(["characters", "show", "Mira"]) == 0
    assert f"  threshold  {calibrated:g}\n" in capsys.readouterr().out

    # The next run takes the stored threshold (the calibration is still reported beside it).
    status, out, err = _run(capsys, files, "--character", "Mira")
    assert status == 0, err
    assert f"threshold {calibrated:.3f}" in out and out.endswith("character Mira: threshold preset\n")
    status, out, err = _run(capsys, files, "--character", "Mira", "--threshold", "0.2", "--json")
    report = json.loads(out)
    assert report["threshold"] == 0.2 and report["character"]["threshold_from"] == "option"
    assert json.loads(registry.read_text())["characters"][0]["threshold"] == calibrated


def test_an_example_character_scores_with_the_packs_pictures(files, registry, capsys, monkeypatch):
    monkeypatch.delenv("KUBIK_INPUT_DIR")
    status, out, err = _run(capsys, files, "--character", "Example (espresso cup)", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert [r["name"].rsplit("/", 1)[1] for r in report["references"]] == ["photo_coffee.jpg",
                                                                           "photo_coffee_closeup.jpg"]
    assert report["character"]["threshold_from"] == "calibrated"


@pytest.mark.parametrize("args, message", [
    (["--character", "Nobody"], "--character: no character named 'Nobody' (known: Mira, Solo)"),
    (["--character", "Solo", "--save-threshold"], "--character Solo: 1 reference picture(s); give it at least 2"),
    (["--character", "Mira", "--input-dir", "elsewhere"], "--character: reference picture 'mira/front.png' of "
                                                          "'Mira' is not a file in the input folder elsewhere"),
    (["--character", "Example (espresso cup)", "--save-threshold"], "--save-threshold: 'Example (espresso cup)' "
                                                                    "ships with KubikAI and cannot be changed"),
    (["--character", "Mira", "--save-threshold", "--threshold", "0.5"], "--save-threshold stores the calibrated "
                                                                        "threshold; leave out --threshold"),
    (["--references", "x.png", "--save-threshold"], "--save-threshold stores the threshold in a character preset"),
    ([], "give the character's pictures either as --references PATH ... or as --character NAME"),
    (["--references", "x.png", "--character", "Mira"], "give the character's pictures either as --references"),
])
def test_bad_presets_are_one_line_and_change_nothing(files, registry, capsys, args, message):
    before = registry.read_bytes()
    status, out, err = _run(capsys, files, *args)
    assert status == 2 and out == ""
    assert err.startswith(f"kubik consistency: error: {message}") and err.count("\n") == 1, err
    assert registry.read_bytes() == before


def test_a_corrupt_registry_is_one_line_and_left_alone(files, registry, capsys):
    broken = registry.read_bytes().replace(b'"Solo"', b'"../Solo"')
    registry.write_bytes(broken)
    status, out, err = _run(capsys, files, "--character", "Mira", "--save-threshold")
    assert status == 2 and out == ""
    assert err == (f"kubik consistency: error: --character: {registry}: character 2: name '../Solo' is not "
                   "usable: start with a letter or digit and use letters, digits, single spaces and . ' ( ) + - _; "
                   "fix the file or move it away (nothing was changed)\n")
    assert registry.read_bytes() == broken
