"""Model folders deleted, renamed or replaced by a file while a real ComfyUI server runs.

ComfyUI 0.8.0 checks its cached folder listings with os.path.getmtime, which raises once a listed
folder is gone; a node whose INPUT_TYPES raises is left out of /object_info and vanishes from the
editor. Every Kubik node must stay listed (with what remains in its lists), list the files again
once the folder is back, and a graph that needs the missing folder must end in one clear line.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_comfyui = pytest.mark.skipif(not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists(),
                                   reason="COMFYUI_DIR is not set to a ComfyUI checkout")

# (model folder, node, input, the file the test puts there, as the node lists it)
LISTED = [
    ("loras", "KubikLoraStack", "lora_1", "mine/a.safetensors"),
    ("checkpoints", "KubikTrainLora", "checkpoint", "mine/c.safetensors"),
    ("classifiers", "KubikLoadClassifier", "classifier_name", "mine/k.safetensors"),
    ("kubik3d", "KubikLoad3DModel", "model_name", "mine/m.safetensors"),
    ("clip_vision", "KubikConsistency", "encoder", "mine/enc"),
    ("kubik_captioners", "KubikTrainLora", "caption_model", "mine/cap"),
]


def fill(models_dir: Path, folder: str, name: str) -> None:
    """Put one file (or, for folder-layout models, one model folder) into a model folder."""
    if name.endswith(".safetensors"):
        path = models_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"listed only")
    else:
        (models_dir / folder / name).mkdir(parents=True, exist_ok=True)
        for file in ("config.json", "model.safetensors"):
            (models_dir / folder / name / file).write_text("{}")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A server of its own: the test breaks its model folders, which the shared one must not see."""
    from kubik_testing.comfy_server import ComfyServer
    from kubik_testing.pack import REPO

    server = ComfyServer(Path(COMFYUI_DIR), REPO, tmp_path_factory.mktemp("comfyui"))
    for folder, _node, _input, name in LISTED:
        fill(server.models_dir, folder, name)
    server.start()
    yield server
    server.stop()


def choices(info: dict, node: str, name: str) -> list:
    spec = info[node]["input"]["required"].get(name) or info[node]["input"]["optional"][name]
    return spec[0] if isinstance(spec[0], list) else spec[1]["options"]


def kubik_nodes(info: dict) -> set[str]:
    return {name for name in info if name.startswith("Kubik")}


def break_folder(path: Path, how: str) -> None:
    if how == "deleted":
        shutil.rmtree(path)
    elif how == "renamed":
        path.rename(path.with_name(path.name + ".old"))
    else:  # replaced by a file of the same name
        shutil.rmtree(path)
        path.write_text("not a folder")


def restore_folder(path: Path, how: str) -> None:
    if how == "renamed":
        path.with_name(path.name + ".old").rename(path)
    else:
        if path.is_file():
            path.unlink()
        path.mkdir()


@needs_comfyui
@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["deleted", "renamed", "replaced by a file"])
def test_every_kubik_node_stays_listed_and_lists_the_folder_again_once_back(comfy, how):
    before = comfy.get("/object_info")
    for folder, node, name, file in LISTED:
        assert file in choices(before, node, name), (folder, node)
    for folder, *_ in LISTED:
        break_folder(comfy.models_dir / folder, how)
    try:
        broken = comfy.get("/object_info")
        assert kubik_nodes(broken) == kubik_nodes(before)
        for folder, node, name, file in LISTED:
            assert file not in choices(broken, node, name), (folder, node)
    finally:
        for folder, *_ in LISTED:
            restore_folder(comfy.models_dir / folder, how)
    for folder, _node, _input, file in LISTED:
        if how != "renamed":
            fill(comfy.models_dir, folder, file)
    back = comfy.get("/object_info")
    for folder, node, name, file in LISTED:
        assert file in choices(back, node, name), (folder, node)


def _defaults(info: dict, node: str, **overrides) -> dict:
    """A freshly added node's widget values, some replaced."""
    values = {}
    for category in ("required", "optional"):
        for name, spec in info[node]["input"].get(category, {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if "default" in options:
                values[name] = options["default"]
    return {**values, **overrides}


@needs_comfyui
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_graph_with_the_recommender_runs_without_the_loras_folder_and_says_why(comfy):
    """The graph still runs (with no LoRA), as one without LoRAs would; the
    explanation names the missing folder and the fix instead of a bare "no LoRA picked"."""
    info = comfy.get("/object_info")
    loras = comfy.models_dir / "loras"
    shutil.rmtree(loras)
    try:
        workflow = {
            "1": {"class_type": "KubikPromptAnalyzer", "inputs": _defaults(
                info, "KubikPromptAnalyzer", prompt="analog film photo of a street")},
            "2": {"class_type": "KubikLoraRecommender", "inputs": _defaults(
                info, "KubikLoraRecommender", analysis=["1", 0], family="sdxl")},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        }
        entry = comfy.queue(workflow)
        assert entry["status"]["status_str"] == "success", entry["status"]
        explanation = entry["outputs"]["3"]["text"][0]
        assert ("- note: no LoRA to recommend: ComfyUI's loras folder models/loras is missing (deleted, renamed or "
                "replaced by a file); recreate it, put the files back and refresh the editor (R)") in explanation
    finally:
        loras.mkdir()
        fill(comfy.models_dir, "loras", LISTED[0][3])


# ----------------------------------------------------------------------------- the pack's own pictures
@pytest.fixture
def examples(node_classes):
    import sys

    return sys.modules[node_classes["KubikExampleImage"].__module__]


def _unreadable(folder: Path) -> Path:
    """``folder`` as the OS shows a folder its user may not read (root reads every folder, so the
    refusal is what os.scandir raises for such a folder)."""
    class Unreadable(type(folder)):
        def iterdir(self):
            raise PermissionError(13, "Permission denied", str(self))

    return Unreadable(folder)


@pytest.mark.parametrize("how", ["deleted", "replaced by a file", "unreadable"])
def test_kubik_example_image_stays_listed_without_its_pictures_folder(examples, node_classes, tmp_path,
                                                                       monkeypatch, how):
    pictures = tmp_path / "example_pictures"
    if how == "replaced by a file":
        pictures.write_text("not a folder")
    elif how == "unreadable":
        pictures.mkdir()
        pictures = _unreadable(pictures)
    monkeypatch.setattr(examples, "PICTURES_DIR", pictures)
    node = node_classes["KubikExampleImage"]
    assert node.INPUT_TYPES()["required"]["picture"][0] == []
    with pytest.raises(ValueError) as err:
        node().load("digit_7.png")
    assert str(err.value) == ("picture: 'digit_7.png' is not one of the pack's example pictures "
                              "(none found: reinstall the pack); pick one from the list")
