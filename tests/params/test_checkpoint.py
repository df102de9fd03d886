"""Finding the checkpoint behind a node in an API prompt, and reading its safetensors header."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from kubik_core.params.checkpoint import find_checkpoint, read_safetensors_metadata

GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/pony_v6.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "a.safetensors"}},
    "11": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["10", 0], "sampling": "eps"}},
    "20": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["11", 0], "family": "auto"}},
    "30": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
    "31": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["30", 0]}},
    "40": {"class_type": "Loop", "inputs": {"model": ["41", 0]}},
    "41": {"class_type": "Loop", "inputs": {"model": ["40", 0]}},
    "42": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["40", 0]}},
    "50": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["99", 0]}},
}


def test_follows_the_model_link_through_lora_loaders():
    ref = find_checkpoint(GRAPH, "20")
    assert (ref.folder, ref.name, ref.node_id) == ("checkpoints", "SDXL/pony_v6.safetensors", "4")
    ref = find_checkpoint(GRAPH, "31")
    assert (ref.folder, ref.name) == ("diffusion_models", "flux1-dev.safetensors")


@pytest.mark.parametrize("prompt,node", [(GRAPH, "42"), (GRAPH, "50"), (GRAPH, "4"), (GRAPH, None),
                                         (None, "20"), ({"20": "garbage"}, "20")])
def test_no_checkpoint_when_the_graph_does_not_lead_to_one(prompt, node):
    assert find_checkpoint(prompt, node) is None


def test_reads_real_safetensors_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(path),
              metadata={"modelspec.title": "Pony Diffusion V6 XL", "ss_base_model_version": "sdxl_base_v1-0"})
    assert read_safetensors_metadata(str(path)) == {
        "modelspec.title": "Pony Diffusion V6 XL", "ss_base_model_version": "sdxl_base_v1-0"}
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    assert read_safetensors_metadata(str(bare)) == {}
    assert read_safetensors_metadata(str(tmp_path / "legacy.ckpt")) == {}  # not opened at all


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return str(path)


@pytest.mark.parametrize("payload,message", [
    (b"abc", "truncated safetensors file"),
    (struct.pack("<Q", 2**40) + b"{}", "not plausible"),
    (struct.pack("<Q", 100) + b"{}", "runs past the end of the file"),
    (struct.pack("<Q", 5) + b"{nope", "not valid JSON"),
])
def test_corrupt_headers_are_clear_errors(tmp_path, payload, message):
    path = _write(tmp_path / "bad.safetensors", payload)
    with pytest.raises(ValueError, match=message):
        read_safetensors_metadata(path)


def test_non_string_metadata_values_are_kept_as_json(tmp_path):
    header = json.dumps({"__metadata__": {"ss_tag_frequency": {"a": {"x": 1}}}}).encode()
    path = _write(tmp_path / "odd.safetensors", struct.pack("<Q", len(header)) + header)
    assert json.loads(read_safetensors_metadata(path)["ss_tag_frequency"]) == {"a": {"x": 1}}
