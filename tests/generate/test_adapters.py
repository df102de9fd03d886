"""SDXL ControlNets and IP-Adapters in `kubik generate`, on tiny random-weight models, on the CPU.

- SDXL: one pipeline with a diffusers-layout ControlNet single file and an IP-Adapter (tiny CLIP
  vision encoder folder): ControlNet strength 0 with IP-Adapter weight 0 gives the picture of the
  plain SDXL pipeline; weight 1 and strength 1 each change it. An original-layout SDXL ControlNet
  (as ComfyUI's classes write it, no prefix) loads into the same diffusers model, every tensor in
  its place.
- SD1.5: the command end to end with an IP-Adapter and no weight: the published default (0.5 with
  a text prompt) printed with its source, and kept in the PNG's kubik JSON, the explanation and
  the learning-store record.
Sizes are tiny (64x64, 1 or 2 steps); each family's pipeline is loaded once.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from .helpers import run_kubik

pytestmark = pytest.mark.timeout(600)

PROMPT = "a red fox in the snow, watercolor"
ENCODER_PROJECTION = 16       # tiny_vision.TINY's projection_dim


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A real photograph as the reference, and a random hint as the control map."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("pictures")
    Image.fromarray(data.astronaut()).resize((96, 96)).save(folder / "reference.png")
    Image.fromarray((np.random.RandomState(2).rand(48, 48, 3) * 255).astype("uint8")).save(folder / "hint.png")
    return folder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from kubik_testing.tiny_vision import tiny_clip_vision

    return tiny_clip_vision(tmp_path_factory.mktemp("clip_vision") / "tiny_encoder")


def _request(checkpoint, tokenizer_dir, tmp_path, **extra):
    from kubik_core.generate import GenerateRequest

    return GenerateRequest(PROMPT, checkpoint=str(checkpoint), out_dir=str(tmp_path), loras="none", memory="none",
                           device="cpu", record=False, tokenizer=tokenizer_dir, seed=3,
                           overrides={"steps": 1, "width": 64, "height": 64}, **extra)


def _difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).max())


def _plain_sdxl_pipeline(pipe):
    """The loaded pipeline's own parts without ControlNet and IP-Adapter."""
    from diffusers import StableDiffusionXLPipeline

    pipe.unload_ip_adapter()
    plain = StableDiffusionXLPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                      text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2, unet=pipe.unet,
                                      scheduler=pipe.scheduler, add_watermarker=False)
    plain.set_progress_bar_config(disable=True)
    return plain


def test_sdxl_controlnet_and_ip_adapter_at_zero_give_the_plain_picture(sdxl_checkpoint, tokenizer_dir, encoder,
                                                                      pictures, tmp_path):
    from kubik_testing.tiny_controlnet import write_tiny_sdxl_diffusers_controlnet
    from kubik_testing.tiny_ip_adapter import write_tiny_ip_adapter

    from kubik_core.generate.run import load, plan_generation, run_pipeline

    controlnet = write_tiny_sdxl_diffusers_controlnet(tmp_path / "tiny_sdxl_canny.safetensors")
    adapter = write_tiny_ip_adapter(tmp_path / "ip-adapter_tiny_sdxl.safetensors", sdxl_checkpoint,
                                    ENCODER_PROJECTION)
    prepared = plan_generation(_request(
        sdxl_checkpoint, tokenizer_dir, tmp_path, controlnet=str(controlnet), control_image=str(pictures / "hint.png"),
        ip_adapter=str(adapter), reference=str(pictures / "reference.png"), image_encoder=str(encoder)))
    assert prepared.ip_adapter.kind == "basic" and prepared.control.control_type
    pipe, _notes = load(prepared)
    assert type(pipe).__name__ == "StableDiffusionXLControlNetPipeline"

    def picture(strength: float, weight: float):
        pipe.set_ip_adapter_scale(weight)
        control = dataclasses.replace(prepared.control, strength=strength)
        return run_pipeline(pipe, dataclasses.replace(prepared, control=control), 3)

    both_off = picture(0.0, 0.0)
    adapter_on = picture(0.0, 1.0)
    control_on = picture(1.0, 0.0)
    plain = run_pipeline(_plain_sdxl_pipeline(pipe),
                         dataclasses.replace(prepared, control=None, ip_adapter=None), 3)
    assert _difference(both_off, plain) <= 2          # 8-bit pictures: rounding at most
    assert _difference(adapter_on, both_off) > 20
    assert _difference(control_on, both_off) > 20


def test_an_original_layout_sdxl_controlnet_fills_the_same_model(tmp_path_factory):
    import torch
    from kubik_testing.tiny_controlnet import build_tiny_sdxl_controlnet
    from safetensors.torch import load_file

    from kubik_core.generate.controlnet import inspect_controlnet, load_controlnet

    from .conftest import _need_comfyui

    path = build_tiny_sdxl_controlnet(tmp_path_factory.mktemp("cn") / "tiny_sdxl_orig.safetensors", _need_comfyui())
    layout = inspect_controlnet(path, "sdxl")
    assert (layout.layout, layout.prefix, layout.config["transformer_layers_per_block"]) == ("original", "", (1, 1, 2))
    model = load_controlnet(path, "sdxl")
    tensors = load_file(str(path))
    assert torch.equal(model.add_embedding.linear_1.weight, tensors["label_emb.0.0.weight"].float())
    assert torch.equal(model.controlnet_cond_embedding.conv_out.weight, tensors["input_hint_block.14.weight"].float())
    assert torch.equal(model.controlnet_mid_block.weight, tensors["middle_block_out.0.weight"].float())
    assert torch.equal(model.mid_block.attentions[0].transformer_blocks[1].attn2.to_k.weight,
                       tensors["middle_block.1.transformer_blocks.1.attn2.to_k.weight"].float())


def test_a_single_file_clip_vision_encoder_loads_every_tensor(encoder, monkeypatch):
    """ComfyUI's clip_vision files are ViT-L/H/bigG (gigabytes); the tiny tower joins the table of
    known towers here so that the single-file loader runs on a real file of the same layout."""
    import torch
    from safetensors.torch import load_file

    from kubik_core.generate import ip_adapter

    monkeypatch.setitem(ip_adapter.KNOWN_TOWERS, (32, 2), ("tiny", "quick_gelu"))
    layout = ip_adapter.inspect_encoder(encoder / "model.safetensors")
    assert (layout.hidden_size, layout.projection_dim, layout.image_size) == (32, ENCODER_PROJECTION, 32)
    model = ip_adapter.load_encoder(layout)
    stored = load_file(str(encoder / "model.safetensors"))
    loaded = model.state_dict()
    assert set(loaded) <= set(stored)
    assert all(torch.equal(loaded[k], stored[k].float()) for k in loaded)


def test_sd15_ip_adapter_from_the_command_line_with_the_published_weight(sd15_checkpoint, tokenizer_dir, encoder,
                                                                         pictures, tmp_path):
    from PIL import Image
    from kubik_testing.tiny_ip_adapter import write_tiny_ip_adapter

    from kubik_core.learning import LearningStore

    adapter = write_tiny_ip_adapter(tmp_path / "ip-adapter_tiny_sd15.safetensors", sd15_checkpoint,
                                    ENCODER_PROJECTION)
    store = tmp_path / "learning.sqlite3"
    status, text = run_kubik("generate", PROMPT, "--checkpoint", sd15_checkpoint, "--tokenizer", tokenizer_dir,
                             "--steps", 2, "--width", 64, "--height", 64, "--loras", "none", "--device", "cpu",
                             "--memory", "none", "--ip-adapter", adapter, "--reference", pictures / "reference.png",
                             "--image-encoder", encoder, "--out", tmp_path / "out", "--store", store)
    assert status == 0, text
    assert ("ip-adapter  ip-adapter_tiny_sd15.safetensors (basic, encoder tiny_encoder), reference reference.png: "
            "weight 0.5 (published: a text prompt goes with the reference image: 0.5; source: tencent-ailab/"
            "IP-Adapter README") in text
    [png] = (tmp_path / "out").glob("kubik_*.png")
    kubik = json.loads(Image.open(png).text["kubik"])
    assert kubik["ip_adapter"] == {
        "file": "ip-adapter_tiny_sd15.safetensors", "kind": "basic", "image_encoder": "tiny_encoder",
        "reference": "reference.png", "weight": 0.5,
        "weight_reason": "published: a text prompt goes with the reference image: 0.5",
        "weight_source": kubik["ip_adapter"]["weight_source"]}
    assert kubik["ip_adapter"]["weight_source"].startswith("tencent-ailab/IP-Adapter README")
    assert "IP-Adapter ip-adapter_tiny_sd15.safetensors (basic) with the reference reference.png at weight 0.5" \
        in kubik["explanation"]
    [row] = LearningStore(str(store)).rows("generations")
    params = json.loads(row["params"]) if isinstance(row["params"], str) else row["params"]
    assert params["ip_adapter"]["file"] == "ip-adapter_tiny_sd15.safetensors" and params["ip_adapter"]["weight"] == 0.5
