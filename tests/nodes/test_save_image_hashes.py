"""Model hash and Lora hashes in Kubik Save Image's A1111 ``parameters``, as CivitAI links them,
through a stand-in of ComfyUI's folder_paths and through ComfyUI 0.8.0's own.

The expected values are computed independently (kubik_testing.hash_files), straight from the
definitions A1111 uses. Files are real safetensors files written here.
"""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from kubik_core.learning.model_hashes import CACHE_FILE_NAME
from kubik_testing.hash_files import checkpoint_file, independent_autov2, independent_autov3, lora_file


def _stand_in_folder_paths(monkeypatch, root: Path) -> None:
    """ComfyUI's folder_paths as the bridge uses it (outside the project, so a local stand-in)."""
    module = types.ModuleType("folder_paths")

    def get_full_path(folder, name):
        path = root / "models" / folder / name
        return str(path) if path.is_file() else None

    def get_save_image_path(prefix, output_dir, width, height):
        subfolder, filename = os.path.split(prefix)
        folder = Path(output_dir) / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder), filename, 1, subfolder, prefix

    module.get_full_path = get_full_path
    module.get_save_image_path = get_save_image_path
    module.get_output_directory = lambda: str(root / "output")
    module.get_user_directory = lambda: str(root / "user")
    module.get_folder_paths = lambda folder: [str(root / "models" / folder)]
    monkeypatch.setitem(sys.modules, "folder_paths", module)


def test_save_image_writes_the_hashes_civitai_links(pack, run_node, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    _stand_in_folder_paths(monkeypatch, tmp_path)
    checkpoint = checkpoint_file(tmp_path / "models" / "checkpoints" / "sdxl" / "juggernaut.safetensors")
    lora = lora_file(tmp_path / "models" / "loras" / "xl" / "castle.safetensors")
    loras = __import__(f"{pack.__name__}.kubik_core.loras", fromlist=["LoraStack"])
    stack = loras.LoraStack([loras.StackItem("xl/castle.safetensors", 0.8, 0.8, autov2="ffffffffff")])
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/juggernaut.safetensors"}},
             "9": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}}}
    result = run_node("KubikSaveImage", images=torch.rand(1, 32, 32, 3), filename_prefix="kubik/hash",
                      record=False, lora_stack=stack, positive="a castle", negative="", prompt=graph)
    image = result["ui"]["images"][0]
    png = Image.open(tmp_path / "output" / image["subfolder"] / image["filename"])
    last = png.text["parameters"].splitlines()[-1]
    assert f"Model hash: {independent_autov2(checkpoint)}, Model: juggernaut" in last
    assert f"Lora hashes: \"castle: {independent_autov3(lora)}\"" in last
    assert json.loads(png.text["kubik"])["loras"][0]["autov3"] == independent_autov3(lora)
    assert (tmp_path / "user" / "kubik" / CACHE_FILE_NAME).is_file()



@pytest.fixture
def comfyui_folder_paths(monkeypatch):
    """ComfyUI's own folder_paths module, imported for this test only (it and the comfy modules
    it imports leave sys.modules afterwards, so later tests run outside ComfyUI again)."""
    comfyui = os.environ.get("COMFYUI_DIR")
    if not comfyui:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to save through its folder_paths")
    before = set(sys.modules)
    monkeypatch.syspath_prepend(comfyui)
    import folder_paths

    yield folder_paths
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("comfy", "folder_paths"):
            del sys.modules[name]


def test_save_image_hashes_with_comfyuis_own_folder_paths(pack, run_node, tmp_path, monkeypatch,
                                                         comfyui_folder_paths):
    """The same through ComfyUI 0.8.0's real folder_paths module (its name lookup and folders)."""
    folder_paths = comfyui_folder_paths
    monkeypatch.setattr(folder_paths, "folder_names_and_paths",
                        {**folder_paths.folder_names_and_paths,
                         "checkpoints": ([str(tmp_path / "ckpt")], folder_paths.supported_pt_extensions),
                         "loras": ([str(tmp_path / "lora")], folder_paths.supported_pt_extensions)})
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path / "output"))
    monkeypatch.setattr(folder_paths, "user_directory", str(tmp_path / "user"))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    checkpoint = checkpoint_file(tmp_path / "ckpt" / "juggernaut.safetensors")
    lora = lora_file(tmp_path / "lora" / "castle.safetensors")
    loras = __import__(f"{pack.__name__}.kubik_core.loras", fromlist=["LoraStack"])
    stack = loras.LoraStack([loras.StackItem("castle.safetensors", 0.8, 0.8)])
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernaut.safetensors"}},
             "9": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}}}
    result = run_node("KubikSaveImage", images=torch.rand(1, 32, 32, 3), filename_prefix="kubik/hash",
                      record=False, lora_stack=stack, positive="a castle", negative="", prompt=graph)
    image = result["ui"]["images"][0]
    text = Image.open(tmp_path / "output" / image["subfolder"] / image["filename"]).text["parameters"]
    assert f"Model hash: {independent_autov2(checkpoint)}, Model: juggernaut" in text
    assert f"Lora hashes: \"castle: {independent_autov3(lora)}\"" in text
    assert (tmp_path / "user" / "kubik" / CACHE_FILE_NAME).is_file()
