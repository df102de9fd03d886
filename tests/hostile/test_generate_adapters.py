"""`kubik generate --controlnet` (SDXL) and `--ip-adapter` on bad input: one clear line, exit status 2,
nothing loaded.

Checkpoints, ControlNets and IP-Adapters here are small safetensors files the test writes with the
key names and shapes of each kind (a few zero tensors): every check reads headers only, so each
error comes before any weight is read. No ComfyUI is needed.
"""
from __future__ import annotations

import contextlib
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from kubik_core.cli import main
from kubik_core.generate.ip_adapter import IPAdapterError, _single_file_config, inspect_adapter

pytestmark = pytest.mark.timeout(120)

SD15 = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (8, 768),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)}
SDXL = {"model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "conditioner.embedders.1.model.token_embedding.weight": (8, 1280),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048)}
SD15_CONTROLNET = {"control_model.input_hint_block.0.weight": (16, 3, 3, 3),
                   "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)}
SDXL_CONTROLNET = {"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
                   "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048)}


def _adapter(width: int, layers: int = 1, embed: int = 1024, **extra) -> dict:
    keys = {"image_proj.proj.weight": (4 * width, embed), "image_proj.proj.bias": (4 * width,),
            "image_proj.norm.weight": (width,), "image_proj.norm.bias": (width,)}
    for number in range(1, 2 * layers, 2):
        keys[f"ip_adapter.{number}.to_k_ip.weight"] = (320, width)
        keys[f"ip_adapter.{number}.to_v_ip.weight"] = (320, width)
    return {**keys, **extra}


def _file(path, keys):
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))
    return path


def _truncated(path, keys):
    _file(path, keys)
    path.write_bytes(path.read_bytes()[:40])
    return path


def _picture(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 40, 40)).save(path)
    return path


def _encoder(folder, hidden=1280, projection=1024):
    """A CLIP vision folder: its config.json is all the checks read."""
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"model_type": "clip_vision_model", "hidden_size": {hidden}, '
                                        f'"projection_dim": {projection}, "image_size": 224}}')
    return folder


def _run(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, err.getvalue().strip()


def _generate(tmp_path, checkpoint_keys, *extra):
    checkpoint = _file(tmp_path / "model.safetensors", checkpoint_keys)
    return _run("generate", "a fox", "--checkpoint", checkpoint, "--out", tmp_path / "out", "--store",
                tmp_path / "store.sqlite3", "--loras", "none", "--device", "cpu", "--dry-run", *extra)


def _control(t, keys, name="cn.safetensors", writer=_file):
    return ("--controlnet", writer(t / name, keys), "--control-image", _picture(t / "hint.png"))


def _ip(t, keys, name="ip.safetensors", writer=_file, encoder=True, reference=True):
    flags = ["--ip-adapter", writer(t / name, keys)]
    if reference:
        flags += ["--reference", _picture(t / "ref.png")]
    if encoder:
        flags += ["--image-encoder", _encoder(t / "clip_vision")]
    return tuple(flags)


@pytest.mark.parametrize("checkpoint, make, message", [
    (SD15, lambda t: _control(t, SDXL_CONTROLNET),
     "--controlnet: cn.safetensors is an SDXL ControlNet but the checkpoint is SD1.5; give an SD1.5 ControlNet"),
    (SDXL, lambda t: _control(t, SD15_CONTROLNET),
     "--controlnet: cn.safetensors is an SD1.5 ControlNet but the checkpoint is SDXL; give an SDXL ControlNet"),
    (SDXL, lambda t: _control(t, SDXL_CONTROLNET, writer=_truncated),
     "--controlnet: cn.safetensors: header length 240 runs past the end of the file (40 bytes): the file is "
     "truncated; give a "
     ".safetensors ControlNet"),
    (SDXL, lambda t: _control(t, SDXL_CONTROLNET),
     "--controlnet: cn.safetensors: an incomplete or unknown ControlNet layout (down_blocks.0.resnets.0.conv2.weight)"),
    (SDXL, lambda t: _control(t, {"lora_unet_x.lora_down.weight": (2, 2)}, "lora.safetensors"),
     "--controlnet: lora.safetensors is not a ControlNet (no input_hint_block.* or controlnet_cond_embedding.* "
     "tensors); give a ControlNet .safetensors from ComfyUI's models/controlnet"),
])
def test_bad_sdxl_controlnets_are_one_clear_line(tmp_path, checkpoint, make, message):
    status, err = _generate(tmp_path, checkpoint, *make(tmp_path))
    assert (status, err) == (2, "kubik generate: error: " + message)


_M = "model.diffusion_model."
# A FLUX.1 dev all-in-one checkpoint's header at tiny_flux's sizes (64 wide, 2 heads of 32, 64-wide
# CLIP-L and T5, 16-channel VAE): the keys the header checks read.
FLUX = {f"{_M}double_blocks.0.img_attn.qkv.weight": (192, 64), f"{_M}img_in.weight": (64, 64),
        f"{_M}double_blocks.0.img_attn.norm.query_norm.scale": (32,),
        f"{_M}double_blocks.0.img_mlp.0.weight": (256, 64),
        f"{_M}single_blocks.0.linear1.weight": (448, 64), f"{_M}txt_in.weight": (64, 64),
        f"{_M}vector_in.in_layer.weight": (64, 64), f"{_M}guidance_in.in_layer.weight": (64, 256),
        "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": (8, 64),
        "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight": (64, 64),
        "vae.decoder.conv_in.weight": (64, 16, 3, 3), "vae.encoder.down.0.block.0.conv1.weight": (32, 32, 3, 3)}
XLABS_CONTROLNET = {"double_blocks.0.img_attn.qkv.weight": (192, 64), "controlnet_blocks.0.weight": (64, 64),
                    "input_hint_block.0.weight": (16, 3, 3, 3), "pos_embed_input.weight": (64, 64)}
SD3_CONTROLNET = {"pos_embed_input.proj.weight": (64, 16, 2, 2), "controlnet_blocks.0.weight": (64, 64),
                  "transformer_blocks.0.attn.to_q.weight": (64, 64)}
SUPPORTED = ("a FLUX.1 ControlNet in diffusers' layout (InstantX Canny or Union, Shakker-Labs Union-Pro or Union-Pro "
             "2.0) or XLabs-AI's (flux-canny/depth/hed-controlnet)")


def _flux_controlnet(t, name="cn.safetensors", **config):
    from kubik_testing.tiny_controlnet import write_tiny_flux_controlnet

    return ("--controlnet", write_tiny_flux_controlnet(t / name, **config), "--control-image", _picture(t / "hint.png"))


def _truncated_flux_controlnet(t):
    """The header intact, the tensors cut off 100 bytes into the data (an interrupted download)."""
    flags = _flux_controlnet(t)
    data = flags[1].read_bytes()
    flags[1].write_bytes(data[:8 + int.from_bytes(data[:8], "little") + 100])
    return flags


@pytest.mark.parametrize("checkpoint, make, message", [
    (FLUX, lambda t: _control(t, SDXL_CONTROLNET),
     f"--controlnet: cn.safetensors is an SDXL ControlNet but the checkpoint is FLUX.1; give {SUPPORTED}"),
    (SDXL, lambda t: _flux_controlnet(t),
     "--controlnet: cn.safetensors is a FLUX.1 ControlNet but the checkpoint is SDXL; give an SDXL ControlNet"),
    (FLUX, lambda t: _flux_controlnet(t, num_attention_heads=4),
     "--controlnet: cn.safetensors is 128 wide with 64 input channels but the FLUX model is 64 wide with 64; give a "
     "ControlNet trained for this FLUX.1 model"),
    (FLUX, lambda t: _flux_controlnet(t, joint_attention_dim=4096, pooled_projection_dim=768),
     "--controlnet: cn.safetensors reads 4096-wide T5 and 768-wide CLIP features but the FLUX model takes 64 and 64; "
     "give a ControlNet trained for this FLUX.1 model"),
    (FLUX, lambda t: _control(t, XLABS_CONTROLNET, "flux-canny-controlnet-v3.safetensors"),
     "--controlnet: flux-canny-controlnet-v3.safetensors: an incomplete or unknown XLabs FLUX ControlNet layout "
     "(img_in.weight)"),
    (FLUX, lambda t: _control(t, SD3_CONTROLNET),
     f"--controlnet: cn.safetensors is an SD3 ControlNet but the checkpoint is FLUX.1; give {SUPPORTED}"),
    (FLUX, lambda t: _control(t, {"lora_unet_x.lora_down.weight": (2, 2)}, "lora.safetensors"),
     "--controlnet: lora.safetensors is not a FLUX ControlNet (no controlnet_x_embedder.weight, nor XLabs' "
     f"double_blocks.* with controlnet_blocks.*); give {SUPPORTED}"),
    (FLUX, _truncated_flux_controlnet,
     "--controlnet: cn.safetensors: tensor data ends at byte 571264 but the file has 7268 bytes: the file is "
     "truncated; give a .safetensors ControlNet"),
    (FLUX, lambda t: _flux_controlnet(t, num_mode=4) + ("--control-type", "pose"),
     "--control-type pose: cn.safetensors is a Union ControlNet with 4 modes and none for pose; give one of canny, "
     "tile, depth, blur"),
    (FLUX, lambda t: _control(t, {"controlnet_x_embedder.weight": (64, 64)}),
     "--controlnet: cn.safetensors: an incomplete or unknown FLUX ControlNet layout "
     "(transformer_blocks.0.attn.norm_q.weight)"),
])
def test_bad_flux_controlnets_are_one_clear_line(tmp_path, checkpoint, make, message):
    status, err = _generate(tmp_path, checkpoint, *make(tmp_path))
    assert (status, err) == (2, "kubik generate: error: " + message)


@pytest.mark.parametrize("checkpoint, make, message", [
    (SD15, lambda t: _ip(t, _adapter(768), reference=False),
     "--ip-adapter and --reference go together: give both or neither"),
    (SD15, lambda t: ("--ip-adapter", _file(t / "ip.safetensors", _adapter(768)), "--reference", t / "absent.png"),
     "--reference: no file 'absent.png'"),
    (SD15, lambda t: ("--ip-adapter", _file(t / "ip.safetensors", _adapter(768)), "--reference",
                      _file(t / "ref.png", {"x": (1,)})),
     "--reference: ref.png is not a readable picture; give a PNG or JPEG"),
    (SD15, lambda t: _ip(t, _adapter(768)) + ("--ip-adapter-weight", "3"),
     "--ip-adapter-weight: 3; give 0 to 2"),
    (SD15, lambda t: _ip(t, {"lora_unet_x.lora_down.weight": (2, 2)}, "lora.safetensors"),
     "--ip-adapter: lora.safetensors is not an IP-Adapter (no image_proj.* and ip_adapter.* tensors); give an "
     "IP-Adapter .safetensors such as ip-adapter_sd15.safetensors"),
    (SD15, lambda t: _ip(t, _adapter(768), writer=_truncated),
     "--ip-adapter: ip.safetensors: header length 536 runs past the end of the file (40 bytes): the file is "
     "truncated; give the IP-Adapter .safetensors (ComfyUI's models/ipadapter)"),
    (SDXL, lambda t: _ip(t, _adapter(768)),
     "--ip-adapter: ip.safetensors is an IP-Adapter for SD1.5 (768-wide text features) but the checkpoint is SDXL "
     "(2048); give an SDXL IP-Adapter"),
    (SD15, lambda t: _ip(t, _adapter(2048)),
     "--ip-adapter: ip.safetensors is an IP-Adapter for SDXL (2048-wide text features) but the checkpoint is SD1.5 "
     "(768); give an SD1.5 IP-Adapter"),
    (SD15, lambda t: _ip(t, _adapter(768, layers=16)),
     "--ip-adapter: ip.safetensors has 16 cross-attention layers but the checkpoint's UNet has 1; it was trained "
     "for another SD1.5 UNet layout"),
    (SD15, lambda t: _ip(t, {"image_proj.proj.0.weight": (3072, 512), "image_proj.proj.2.weight": (3072, 3072),
                             "image_proj.norm.weight": (768,), "ip_adapter.1.to_k_ip.weight": (320, 768)}),
     "--ip-adapter: ip.safetensors is a FaceID IP-Adapter, which needs insightface face embeddings; kubik "
     "generate loads the image IP-Adapters (basic, plus, full face)"),
    (SD15, lambda t: _ip(t, {"image_proj.latents": (1, 16, 768), "ip_adapter.1.to_k_ip.weight": (320, 768)}),
     "--ip-adapter: ip.safetensors: its image projection is incomplete or of an unknown kind "
     "(image_proj.proj_out.weight); give an h94/IP-Adapter file"),
    (SD15, lambda t: _ip(t, _adapter(768), encoder=False),
     "--image-encoder: ip.safetensors needs the CLIP vision encoder it was trained with; give its folder or "
     "ComfyUI's clip_vision file (none is downloaded)"),
    (SD15, lambda t: _ip(t, _adapter(768, embed=1280)),
     "--image-encoder: clip_vision gives 1024-wide projected image embeddings but ip.safetensors reads 1280; give "
     "the encoder it was trained with (ViT-H/14 for the sd15 and _vit-h adapters, ViT-bigG/14 for "
     "ip-adapter_sdxl)"),
    (SD15, lambda t: _ip(t, _adapter(768), encoder=False) + (
        "--image-encoder", _file(t / "clip_vision.safetensors", {
            "vision_model.embeddings.patch_embedding.weight": (32, 3, 8, 8),
            "vision_model.embeddings.position_embedding.weight": (17, 32),
            "vision_model.encoder.layers.1.mlp.fc1.weight": (64, 32),
            "vision_model.encoder.layers.0.mlp.fc1.weight": (64, 32), "visual_projection.weight": (16, 32)})),
     "--image-encoder: clip_vision.safetensors is a 2-layer, 32-wide CLIP vision tower, not ViT-L, ViT-H or "
     "ViT-bigG whose settings are known; give its folder with config.json"),
    (SD15, lambda t: _ip(t, _adapter(768), encoder=False) + (
        "--image-encoder", _file(t / "vae.safetensors", {"decoder.conv_in.weight": (4, 4)})),
     "--image-encoder: vae.safetensors is not a CLIP vision model in transformers' layout (vision_model.* and "
     "visual_projection.weight); give ComfyUI's clip_vision file for the adapter, or a folder with config.json "
     "and model.safetensors"),
])
def test_bad_ip_adapter_inputs_are_one_clear_line(tmp_path, checkpoint, make, message):
    status, err = _generate(tmp_path, checkpoint, *make(tmp_path))
    assert (status, err) == (2, "kubik generate: error: " + message)


def test_a_good_header_set_passes_the_dry_run_with_the_advised_weight(tmp_path):
    out = io.StringIO()
    checkpoint = _file(tmp_path / "model.safetensors", SD15)
    with contextlib.redirect_stdout(out):
        status = main([str(a) for a in ("generate", "a fox", "--checkpoint", checkpoint, "--loras", "none",
                                        "--device", "cpu", "--dry-run", *_ip(tmp_path, _adapter(768)))])
    assert status == 0
    assert "ip-adapter  ip.safetensors (basic, encoder clip_vision), reference ref.png: weight 0.5 (published: a " \
           "text prompt goes with the reference image: 0.5; source: tencent-ailab/IP-Adapter README" in out.getvalue()


def test_a_single_file_vit_h_gets_comfyuis_vit_h_settings():
    shapes = {"vision_model.embeddings.patch_embedding.weight": (1280, 3, 14, 14),
              "vision_model.embeddings.position_embedding.weight": (257, 1280),
              "vision_model.encoder.layers.0.mlp.fc1.weight": (5120, 1280),
              "vision_model.encoder.layers.31.mlp.fc1.weight": (5120, 1280), "visual_projection.weight": (1024, 1280)}
    # comfy/clip_vision_config_h.json
    assert _single_file_config(shapes, "h.safetensors") == dict(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
        patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)


_KEYS = st.sampled_from(["image_proj.proj.weight", "image_proj.norm.weight", "image_proj.latents",
                         "image_proj.proj_in.weight", "image_proj.proj_out.weight", "image_proj.proj.3.weight",
                         "image_proj.proj.0.weight", "ip_adapter.1.to_k_ip.weight", "ip_adapter.3.to_v_ip.weight",
                         "ip_adapter.x.to_k_lora.weight", "ip_adapter.1.bias", "other.weight"])


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, st.lists(st.integers(1, 9), min_size=1, max_size=3), max_size=8))
def test_fuzz_ip_adapter_headers_give_a_layout_or_one_clear_line(tmp_path_factory, keys):
    path = tmp_path_factory.getbasetemp() / "fuzz-ip.safetensors"
    _file(path, keys)
    try:
        layout = inspect_adapter(path)
    except IPAdapterError as exc:
        assert str(exc).startswith("--ip-adapter: ") and "\n" not in str(exc)
        return
    assert layout.kind in ("basic", "plus", "full") and layout.layers >= 1 and layout.cross_attention_dim >= 1


def test_a_legacy_pickle_bin_with_a_flux_checkpoint_is_named_as_such(tmp_path):
    """A .bin that InstantX's reader refuses used to fall through to XLabs' safetensors reader,
    whose line ("header length ... not plausible; not a safetensors file?") hid the real fault."""
    import pickle

    (tmp_path / "ip-adapter.bin").write_bytes(pickle.dumps({"image_proj": {}, "ip_adapter": {}}))
    status, err = _generate(tmp_path, FLUX, "--ip-adapter", tmp_path / "ip-adapter.bin",
                            "--reference", _picture(tmp_path / "r.png"))
    assert (status, err) == (2, "kubik generate: error: --ip-adapter: ip-adapter.bin is not a zip-format torch file "
                                "(a legacy pickle is never opened); convert it to .safetensors where it came from, "
                                "or give the released ip-adapter.bin")
