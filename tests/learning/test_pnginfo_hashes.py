"""Model hash and Lora hashes in Kubik Save Image's A1111 ``parameters``, as CivitAI links them.

The expected values are computed here independently, straight from the definitions A1111 uses:
Model hash = the first 10 hex digits of the SHA-256 of the whole checkpoint file; a LoRA's hash
= the first 12 hex digits of the SHA-256 of the bytes after the safetensors header (8 bytes of
little-endian header length, then the header). Files are real safetensors files written here.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from kubik_core.learning.model_hashes import CACHE_FILE_NAME, HashCache, add_resource_hashes, sha256_of
from kubik_core.learning.pnginfo import a1111_parameters


def _independent_autov3(path: Path) -> str:
    data = path.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + header_length:]).hexdigest()[:12]


def _independent_autov2(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def _lora(path: Path, title: str = "castle", seed: int = 0) -> Path:
    """A kohya-style LoRA file (key layout and metadata as kohya's sd-scripts write them)."""
    generator = torch.Generator().manual_seed(seed)
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    tensors = {f"{base}.lora_down.weight": torch.randn(4, 320, generator=generator),
               f"{base}.lora_up.weight": torch.randn(320, 4, generator=generator),
               f"{base}.alpha": torch.tensor(4.0)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_output_name": title, "ss_network_dim": "4",
                                            "ss_base_model_version": "sdxl_base_v1-0"})
    return path


def _checkpoint(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.randn(320, 4, 3, 3),
               "first_stage_model.decoder.conv_out.bias": torch.zeros(3)}, str(path),
              metadata={"modelspec.title": "test checkpoint"})
    return path


def test_lora_hash_is_the_tensor_data_hash_and_ignores_metadata(tmp_path):
    first = _lora(tmp_path / "a.safetensors", title="castle")
    second = _lora(tmp_path / "b.safetensors", title="a much longer title that changes the header")
    assert first.read_bytes() != second.read_bytes()
    assert sha256_of(first, "tensors")[:12] == _independent_autov3(first) == _independent_autov3(second)
    assert sha256_of(second, "tensors")[:12] == _independent_autov3(second)
    assert sha256_of(first, "file")[:10] == _independent_autov2(first) != _independent_autov2(second)


def test_other_lora_files_hash_the_whole_file_as_a1111_does(tmp_path):
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(b"\x80\x02not a safetensors file" * 100)
    assert sha256_of(legacy, "tensors") == hashlib.sha256(legacy.read_bytes()).hexdigest()


@pytest.mark.timeout(60)  # opening the FIFO for reading would wait for a writer forever
def test_broken_and_hostile_files_give_no_hash_and_no_error(tmp_path):
    cache = HashCache(tmp_path / "cache")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert cache.get(truncated, "tensors") == ""
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    assert cache.get(short, "tensors") == ""
    assert cache.get(tmp_path / "missing.safetensors", "tensors") == ""
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    assert cache.get(fifo, "tensors") == ""                  # refused, never waits for a writer


def test_cached_hashes_are_reused_until_the_file_changes(tmp_path):
    lora = _lora(tmp_path / "loras" / "castle.safetensors")
    expected = _independent_autov3(lora)
    cache = HashCache(tmp_path / "cache")
    assert cache.get(lora, "tensors")[:12] == expected
    stat = lora.stat()
    data = bytearray(lora.read_bytes())
    data[-1] ^= 0xFF                                          # same size, same mtime: not read again
    lora.write_bytes(bytes(data))
    os.utime(lora, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.get(lora, "tensors")[:12] == expected
    reopened = HashCache(tmp_path / "cache")                  # the cache file holds it across runs
    assert reopened.get(lora, "tensors")[:12] == expected
    os.utime(lora, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert reopened.get(lora, "tensors")[:12] == _independent_autov3(lora) != expected


def test_large_files_are_hashed_in_the_background(tmp_path):
    checkpoint = _checkpoint(tmp_path / "model.safetensors")
    cache = HashCache(tmp_path / "cache")
    assert cache.get(checkpoint, "file", inline_bytes=0) == ""     # never waited for
    assert cache.wait(timeout=60)
    assert cache.get(checkpoint, "file", inline_bytes=0)[:10] == _independent_autov2(checkpoint)


@pytest.mark.parametrize("content", [
    b"[" * 10000 + b"]" * 10000, b"{not json", b'{"version": 1, "files": 7}',
    json.dumps({"version": 1, "files": {"relative/path": {"size": 1, "mtime_ns": 1, "file": "0" * 64},
                                        "/abs": {"size": -1, "mtime_ns": 1, "file": "0" * 64},
                                        "/abs2": {"size": 1, "mtime_ns": 1, "file": "zz"}}}).encode(),
])
def test_a_damaged_cache_file_is_ignored(tmp_path, content):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CACHE_FILE_NAME).write_bytes(content)
    lora = _lora(tmp_path / "castle.safetensors")
    assert HashCache(tmp_path / "cache").get(lora, "tensors")[:12] == _independent_autov3(lora)
    saved = json.loads((tmp_path / "cache" / CACHE_FILE_NAME).read_text())
    assert list(saved["files"]) == [str(lora)]


def test_parameters_text_has_model_hash_and_autov3_lora_hashes():
    plan = {"steps": 30, "sampler_name": "euler", "cfg": 7.0, "width": 1024, "height": 1024}
    text = a1111_parameters("a castle", "blurry", plan, seed=3, model_name="xl/juggernaut.safetensors",
                            loras=[{"name": "xl/castle.safetensors", "strength_model": 0.8,
                                    "autov3": "0123456789ab", "autov2": "ffffffffff"},
                                   {"name": "old.safetensors", "strength_model": 1.0, "autov2": "abcdef0123"}],
                            model_hash="9f1c2d3e4b")
    last = text.splitlines()[-1]
    assert ", Model hash: 9f1c2d3e4b, Model: juggernaut, " in last
    assert 'Lora hashes: "castle: 0123456789ab, old: abcdef0123"' in last
    assert "Model hash" not in a1111_parameters("a castle", plan=plan, model_name="x.safetensors")


def test_add_resource_hashes_fills_what_it_finds(tmp_path):
    lora = _lora(tmp_path / "loras" / "castle.safetensors")
    checkpoint = _checkpoint(tmp_path / "checkpoints" / "model.safetensors")
    loras = [{"name": "castle.safetensors"}, {"name": "gone.safetensors", "autov2": "abcdef0123"}]
    find = lambda name: str(tmp_path / "loras" / name) if (tmp_path / "loras" / name).exists() else None
    model_hash = add_resource_hashes(loras, str(checkpoint), find, HashCache(tmp_path / "cache"))
    assert model_hash == _independent_autov2(checkpoint)
    assert loras == [{"name": "castle.safetensors", "autov3": _independent_autov3(lora)},
                     {"name": "gone.safetensors", "autov2": "abcdef0123"}]


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
    checkpoint = _checkpoint(tmp_path / "models" / "checkpoints" / "sdxl" / "juggernaut.safetensors")
    lora = _lora(tmp_path / "models" / "loras" / "xl" / "castle.safetensors")
    loras = __import__(f"{pack.__name__}.kubik_core.loras", fromlist=["LoraStack"])
    stack = loras.LoraStack([loras.StackItem("xl/castle.safetensors", 0.8, 0.8, autov2="ffffffffff")])
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/juggernaut.safetensors"}},
             "9": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}}}
    result = run_node("KubikSaveImage", images=torch.rand(1, 32, 32, 3), filename_prefix="kubik/hash",
                      record=False, lora_stack=stack, positive="a castle", negative="", prompt=graph)
    image = result["ui"]["images"][0]
    png = Image.open(tmp_path / "output" / image["subfolder"] / image["filename"])
    last = png.text["parameters"].splitlines()[-1]
    assert f"Model hash: {_independent_autov2(checkpoint)}, Model: juggernaut" in last
    assert f"Lora hashes: \"castle: {_independent_autov3(lora)}\"" in last
    assert json.loads(png.text["kubik"])["loras"][0]["autov3"] == _independent_autov3(lora)
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
    checkpoint = _checkpoint(tmp_path / "ckpt" / "juggernaut.safetensors")
    lora = _lora(tmp_path / "lora" / "castle.safetensors")
    loras = __import__(f"{pack.__name__}.kubik_core.loras", fromlist=["LoraStack"])
    stack = loras.LoraStack([loras.StackItem("castle.safetensors", 0.8, 0.8)])
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernaut.safetensors"}},
             "9": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}}}
    result = run_node("KubikSaveImage", images=torch.rand(1, 32, 32, 3), filename_prefix="kubik/hash",
                      record=False, lora_stack=stack, positive="a castle", negative="", prompt=graph)
    image = result["ui"]["images"][0]
    text = Image.open(tmp_path / "output" / image["subfolder"] / image["filename"]).text["parameters"]
    assert f"Model hash: {_independent_autov2(checkpoint)}, Model: juggernaut" in text
    assert f"Lora hashes: \"castle: {_independent_autov3(lora)}\"" in text
    assert (tmp_path / "user" / "kubik" / CACHE_FILE_NAME).is_file()
