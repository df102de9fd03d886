"""`kubik lora train` on a tiny SD1.5-shaped checkpoint and real photos: the same loop as SDXL
(test_train_sdxl.py covers resume, caches, samples, EMA and torchrun), here what differs per
family: the family read from the file, 512-pixel buckets by default, one text encoder
(``lora_te_``), kohya's SD1.x key layout, the metadata naming SD1.5, and ComfyUI loading it.

The checkpoint is built with ComfyUI's own classes (tests/kubik_testing/tiny_checkpoint.py), so
the module needs COMFYUI_DIR and skips cleanly without it. One CLI run, offline.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
    pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the tiny SD1.5 checkpoint cannot be built",
                allow_module_level=True)

from tests.kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint  # noqa: E402

from .training_runs import REPO, comfy_lora_reports, fixed_batch_losses, offline_env, read_lora, write_photos  # noqa: E402

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3 steps with the text encoder, no --resolution (the family's 512 applies)."""
    tmp = tmp_path_factory.mktemp("lora_train_sd15")
    build_tiny_sd15_checkpoint(tmp / "tiny_sd15.safetensors", Path(COMFYUI_DIR))
    write_photos(tmp / "photos")
    run = subprocess.run(
        [sys.executable, "-m", "kubik_core", "lora", "train", str(tmp / "photos"),
         "--base", str(tmp / "tiny_sd15.safetensors"), "--output", str(tmp / "loras"), "--name", "kbk_sd15",
         "--trigger", "kbk style", "--steps", "3", "--lr", "1e-3", "--rank", "4", "--alpha", "4",
         "--train-text-encoder", "--precision", "fp32", "--no-gradient-checkpointing", "--no-progress",
         "--device", "cpu", "--tokenizer", str(Path(COMFYUI_DIR) / "comfy" / "sd1_tokenizer")],
        cwd=REPO, env=offline_env(tmp), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp, run


def test_training_an_sd15_checkpoint_reduces_the_loss(trained):
    _, run = trained
    before, after = fixed_batch_losses(run)
    assert after < before


def test_the_lora_has_sd15_kohya_keys_and_metadata(trained):
    tmp, _ = trained
    metadata, tensors = read_lora(tmp / "loras" / "kbk_sd15.safetensors")
    assert {key.split("_")[1] for key in tensors} == {"unet", "te"}        # one text encoder: lora_te_
    # kohya's SD1.x layout: diffusers module paths (sd-scripts trains SD1.x on a diffusers UNet)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight" in tensors
    assert tuple(tensors["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"].shape) == (4, 768)
    assert metadata["ss_base_model_version"] == "sd_v1"
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert metadata["modelspec.resolution"] == "512x512" and metadata["ss_resolution"] == "(512, 512)"
    # never enlarged: the small photos got buckets of their own size below 512
    assert json.loads(metadata["ss_bucket_info"])["buckets"] == {"64x64": 3}
    assert metadata["modelspec.trigger_phrase"] == "kbk style"
    base_hash = hashlib.sha256((tmp / "tiny_sd15.safetensors").read_bytes()).hexdigest()
    assert metadata["modelspec.base_model_hash_sha256"] == base_hash
    sidecar = json.loads((tmp / "loras" / "kbk_sd15.metadata.json").read_text())
    assert sidecar["base_model"] == "SD 1.5" and sidecar["civitai"]["trainedWords"] == ["kbk style"]


def test_comfyui_loads_every_key_of_the_sd15_lora_and_the_unet_output_changes(trained):
    tmp, _ = trained
    [report] = comfy_lora_reports(COMFYUI_DIR, tmp / "tiny_sd15.safetensors", tmp / "loras" / "kbk_sd15.safetensors")
    assert report["model_type"] == "SD15"
    assert report["problems"] == []
    assert report["unet_patches"] + report["clip_patches"] == report["lora_modules"]
    assert report["clip_patches"] > 0 and report["finite"] and report["output_change"] > 1e-4


def test_the_lora_library_lists_it_as_sd15_with_its_trigger(trained):
    tmp, _ = trained
    from kubik_core.loras.library import scan_library

    entries = {e.name: e for e in scan_library([tmp / "loras"], cache_path=None).sorted_entries()}
    assert set(entries) == {"kbk_sd15.safetensors"}
    assert entries["kbk_sd15.safetensors"].base == "sd1"
    assert entries["kbk_sd15.safetensors"].triggers == ["kbk style"]
