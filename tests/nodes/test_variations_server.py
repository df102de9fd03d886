"""Kubik Variations and Kubik Contact Sheet on a real ComfyUI (COMFYUI_DIR) with the tiny SD1.5
checkpoint and a LoRA written for it: one queue makes the whole batch from one checkpoint load,
each picture equals a plain KSampler (and LoraLoader) run with its values, and the sheet is the
grid of those pictures with its labels. Skipped without COMFYUI_DIR."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kubik_testing.comfy_server import ComfyServer
from kubik_testing.pack import REPO
from kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint

pytestmark = pytest.mark.integration
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
CHECKPOINT, LORA = "tiny.safetensors", "tiny_lora.safetensors"
PROMPT, NEGATIVE = "a red cube on a table", "blurry"
BASE = dict(steps=2, cfg=6.0, sampler_name="dpmpp_2m", scheduler="karras", width=64, height=64)
SEEDS, STRENGTHS = (3, 4), (0.0, 1.0)


def _write_tiny_lora(path: Path) -> None:
    """A rank-4 LoRA in kohya's key layout on the tiny UNet's attention projections (320 wide),
    large enough to change the picture."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for block in ("input_blocks_1_1", "output_blocks_0_1", "output_blocks_1_1"):
        for projection in ("attn1_to_q", "attn1_to_k", "attn1_to_v", "attn1_to_out_0"):
            key = f"lora_unet_{block}_transformer_blocks_0_{projection}"
            tensors[f"{key}.lora_down.weight"] = torch.randn(4, 320, generator=generator) * 0.2
            tensors[f"{key}.lora_up.weight"] = torch.randn(320, 4, generator=generator) * 0.2
            tensors[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": "4"})


def _variations_workflow() -> dict:
    stack = {f"lora_{n}": "None" for n in (2, 3)} | {f"strength_{kind}_{n}": 1.0 for n in (1, 2, 3)
                                                     for kind in ("model", "clip")}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "KubikLoraStack", "inputs": {"lora_1": LORA, **stack}},
        "3": {"class_type": "KubikVariations", "inputs": {
            "x_axis": "seed", "x_values": ", ".join(map(str, SEEDS)), "y_axis": "lora_strength",
            "y_values": ", ".join(map(str, STRENGTHS)), "seed": 0, **BASE, "lora_stack": ["2", 0]}},
        "4": {"class_type": "KubikApplyLoraStack", "inputs": {
            "model": ["1", 0], "clip": ["1", 1], "lora_stack": ["3", 7], "add_trigger_words": False}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": ["3", 5], "height": ["3", 6], "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": ["3", 0], "steps": ["3", 1], "cfg": ["3", 2], "sampler_name": ["3", 3],
            "scheduler": ["3", 4], "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0],
            "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "variation"}},
        "11": {"class_type": "KubikContactSheet", "inputs": {"images": ["9", 0], "labels": ["3", 8]}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "sheet"}},
    }


def _plain_workflow(seed: int, lora_strength: float | None, prefix: str) -> dict:
    """The same picture the way ComfyUI's own example graph makes it (LoraLoader when a LoRA is on)."""
    model, clip = ["1", 0], ["1", 1]
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}}}
    if lora_strength is not None:
        workflow["2"] = {"class_type": "LoraLoader", "inputs": {
            "model": model, "clip": clip, "lora_name": LORA, "strength_model": lora_strength,
            "strength_clip": lora_strength}}
        model, clip = ["2", 0], ["2", 1]
    workflow.update({
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": clip}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": clip}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": seed, "steps": BASE["steps"], "cfg": BASE["cfg"],
            "sampler_name": BASE["sampler_name"], "scheduler": BASE["scheduler"], "positive": ["5", 0],
            "negative": ["6", 0], "latent_image": ["7", 0], "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix}},
    })
    return workflow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the real-server variation tests are skipped")
    srv = ComfyServer(Path(COMFYUI_DIR), REPO, tmp_path_factory.mktemp("comfyui-variations"))
    for folder in ("checkpoints", "loras"):
        (srv.models_dir / folder).mkdir(parents=True)
    build_tiny_sd15_checkpoint(srv.models_dir / "checkpoints" / CHECKPOINT, Path(COMFYUI_DIR))
    _write_tiny_lora(srv.models_dir / "loras" / LORA)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def batch(server):
    """The variations workflow, queued first on the fresh server: (history entry, its log lines)."""
    before = len(server.log())
    entry = server.queue(_variations_workflow(), timeout=600)
    assert entry["status"]["status_str"] == "success", str(entry["status"]["messages"])[:3000]
    return entry, server.log()[before:]


def _pixels(server, ref: dict) -> np.ndarray:
    with Image.open(server.output_dir / ref.get("subfolder", "") / ref["filename"]) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.timeout(900)
def test_one_queue_makes_the_batch_from_one_checkpoint_load(batch):
    entry, log = batch
    assert len(entry["outputs"]["10"]["images"]) == len(SEEDS) * len(STRENGTHS)
    # ComfyUI logs the model type each time it builds a model from a checkpoint, and the VAE's
    # device each time it builds a VAE: once each for the whole batch.
    assert log.count("model_type EPS") == 1, log[-3000:]
    assert log.count("VAE load device") == 1, log[-3000:]


@pytest.mark.timeout(900)
def test_each_variation_equals_a_plain_ksampler_run(server, batch):
    entry, _log = batch
    cells = [_pixels(server, ref) for ref in entry["outputs"]["10"]["images"]]
    assert not np.array_equal(cells[0], cells[1]), "the seeds made the same picture"
    assert not np.array_equal(cells[0], cells[2]), "the LoRA changed nothing"
    # cell order: rows of X (seeds), one row per Y (LoRA strength)
    for index, (seed, strength, lora) in enumerate([(3, 0.0, None), (4, 1.0, 1.0)]):
        cell = (len(SEEDS) * STRENGTHS.index(strength)) + SEEDS.index(seed)
        plain = server.queue(_plain_workflow(seed, lora, f"plain{index}"), timeout=600)
        assert plain["status"]["status_str"] == "success", str(plain["status"]["messages"])[:3000]
        (ref,) = plain["outputs"]["10"]["images"]
        assert np.array_equal(_pixels(server, ref), cells[cell]), f"seed {seed}, LoRA {strength}: pictures differ"


@pytest.mark.timeout(900)
def test_the_contact_sheet_is_the_grid_of_the_batch(server, batch):
    from kubik_core.variations import VariationGrid
    from kubik_core.variations.sheet import BACKGROUND, label_boxes, layout

    entry, _log = batch
    cells = [_pixels(server, ref) for ref in entry["outputs"]["10"]["images"]]
    (ref,) = entry["outputs"]["12"]["images"]
    sheet = _pixels(server, ref)
    grid = VariationGrid("seed", ("seed 3", "seed 4"), "lora_strength", ("LoRA x0", "LoRA x1"))
    sheet_layout = layout(grid, [(64, 64)] * 4)
    assert sheet.shape == (sheet_layout.size[1], sheet_layout.size[0], 3)
    for index, cell in enumerate(cells):
        x, y = sheet_layout.cell_origin(index % 2, index // 2)
        assert np.array_equal(sheet[y:y + 64, x:x + 64], cell)
    assert [text for _, text in label_boxes(grid, sheet_layout)] == ["seed 3", "seed 4", "LoRA x0", "LoRA x1"]
    for (left, top, right, bottom), text in label_boxes(grid, sheet_layout):
        assert (sheet[top:bottom, left:right] != BACKGROUND).any(), f"label {text!r} is missing"


@pytest.mark.timeout(900)
def test_kubik_variations_queues_a_workflow_through_the_queue_client(server, batch, tmp_path, capsys):
    """`kubik variations --queue`: one job per seed on a plain graph, pictures downloaded, each the
    batch's picture with the same values (row 0 of the batch is the LoRA at strength 0)."""
    import json

    from kubik_core.cli import main

    entry, _log = batch
    cells = [_pixels(server, ref) for ref in entry["outputs"]["10"]["images"]]
    workflow = tmp_path / "plain.json"
    workflow.write_text(json.dumps(_plain_workflow(0, None, "cli")))
    out = tmp_path / "out"
    assert main(["variations", "--x-axis", "seed", "--x-values", "3, 4", "--queue", str(workflow),
                 "--server", server.url, "--out", str(out)]) == 0
    assert "2 done, 0 finished before (skipped), 0 failed" in capsys.readouterr().out
    pictures = sorted(out.rglob("*.png"))
    assert [p.name.split("-")[0] for p in pictures] == ["variation00", "variation01"]
    for picture, cell in zip(pictures, cells[:2]):
        with Image.open(picture) as image:
            assert np.array_equal(np.asarray(image.convert("RGB")), cell), picture.name


@pytest.mark.timeout(900)
def test_kubik_variations_sends_the_loras_to_apply_lora_stack(server, batch, tmp_path, capsys):
    """With --lora, each job's Kubik Apply LoRA Stack gets the variation's stack: the picture is the
    batch's one at seed 4 with the LoRA at strength 1."""
    import json

    from kubik_core.cli import main

    entry, _log = batch
    cell = _pixels(server, entry["outputs"]["10"]["images"][3])
    workflow = _plain_workflow(0, None, "cli_lora")
    workflow["4"] = {"class_type": "KubikApplyLoraStack", "inputs": {
        "model": ["1", 0], "clip": ["1", 1], "lora_stack": {"items": []}, "add_trigger_words": False}}
    workflow["5"]["inputs"]["clip"] = workflow["6"]["inputs"]["clip"] = ["4", 1]
    workflow["8"]["inputs"]["model"] = ["4", 0]
    path = tmp_path / "lora.json"
    path.write_text(json.dumps(workflow))
    out = tmp_path / "out"
    assert main(["variations", "--x-axis", "seed", "--x-values", "4", "--y-axis", "lora_strength", "--y-values", "1",
                 "--lora", LORA, "--queue", str(path), "--server", server.url, "--out", str(out)]) == 0
    assert "1 done" in capsys.readouterr().out
    (picture,) = out.rglob("*.png")
    with Image.open(picture) as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), cell)
