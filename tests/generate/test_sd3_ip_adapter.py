"""InstantX's SD3.5 Large IP-Adapter in `kubik generate`, on the CPU: tiny_sd3's SD3.5 Large-shaped
checkpoint (128 wide, 2 joint blocks), tiny adapters in InstantX's released layout written from its
header (tiny_ip_adapter.write_tiny_instantx_sd3_ip_adapter: the torch zip ``ip-adapter.bin`` as
released, and its .safetensors conversion) and a tiny SigLIP vision folder (tiny_vision.py), all
real files.

- Weight 0 gives the picture of the same pipeline with the adapter unloaded; weight 1 changes
  it; the same seed gives the same picture; planning and loading make no connection.
- The command line end to end with the .safetensors conversion and no weight: InstantX's 0.5 with
  its source, in the output and the PNG; the same picture as the released .bin at 0.5.
- Bad files and flags: the exact one line each, at planning, before any weight is loaded; the
  layout parser fuzzed.
64x64, 2 steps; the pipeline is loaded once.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import run_kubik

pytestmark = pytest.mark.timeout(600)

PROMPT = "a red fox in the snow"
SIGLIP_WIDTH = 32             # tiny_vision.TINY's hidden_size
FIX = "give InstantX's SD3.5-Large-IP-Adapter ip-adapter.bin as released, or its .safetensors conversion"


@pytest.fixture(scope="module")
def files(tmp_path_factory, sd3_files):
    from kubik_testing.tiny_ip_adapter import write_tiny_instantx_sd3_ip_adapter
    from kubik_testing.tiny_vision import tiny_siglip_vision
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("sd3-ip")
    Image.fromarray(data.astronaut()).resize((96, 96)).save(folder / "reference.png")
    large = sd3_files["large"]
    return SimpleNamespace(
        folder=folder, reference=folder / "reference.png",
        encoder=tiny_siglip_vision(folder / "siglip-so400m-tiny"),
        released=write_tiny_instantx_sd3_ip_adapter(folder / "ip-adapter.bin", large, SIGLIP_WIDTH),
        converted=write_tiny_instantx_sd3_ip_adapter(folder / "sd35-large-ip-adapter.safetensors", large,
                                                     SIGLIP_WIDTH))


def _request(sd3_files, tokenizer_dir, t5_tokenizer_dir, out, **extra):
    from kubik_core.generate import GenerateRequest

    return GenerateRequest(PROMPT, checkpoint=str(sd3_files["large"]), out_dir=str(out), loras="none",
                           memory="none", device="cpu", record=False, tokenizer=tokenizer_dir,
                           t5_tokenizer=t5_tokenizer_dir, seed=4, overrides={"steps": 2, "width": 64, "height": 64},
                           text_encoders=[str(sd3_files[k]) for k in ("clip_l", "clip_g", "t5xxl")], **extra)


def _model_flags(sd3_files, tokenizer_dir, t5_tokenizer_dir) -> list:
    return ["--checkpoint", sd3_files["large"], "--text-encoders", sd3_files["clip_l"], sd3_files["clip_g"],
            sd3_files["t5xxl"], "--tokenizer", tokenizer_dir, "--t5-tokenizer", t5_tokenizer_dir, "--steps", 2,
            "--width", 64, "--height", 64, "--seed", 4, "--loras", "none", "--device", "cpu", "--memory", "none"]


@pytest.fixture(scope="module")
def loaded(sd3_files, tokenizer_dir, t5_tokenizer_dir, files, tmp_path_factory):
    """The released .bin planned and loaded with no network (weight: the advice's 0.5)."""
    import socket

    from kubik_core.generate.run import load, plan_generation

    def no_network(*args):
        raise AssertionError(f"a connection was attempted: {args}")

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", no_network)
    try:
        prepared = plan_generation(_request(sd3_files, tokenizer_dir, t5_tokenizer_dir,
                                            tmp_path_factory.mktemp("out"), ip_adapter=str(files.released),
                                            reference=str(files.reference), image_encoder=str(files.encoder)))
        pipe, _notes = load(prepared)
    finally:
        patch.undo()
    return prepared, pipe


@pytest.fixture(scope="module")
def pictures(loaded) -> dict:
    """The loaded pipeline's pictures at weights 0, 1 (twice) and 0.5, then with the adapter unloaded."""
    import dataclasses

    from kubik_core.generate.run import run_pipeline

    prepared, pipe = loaded

    def picture(weight: float):
        pipe.set_ip_adapter_scale(weight)
        return np.asarray(run_pipeline(pipe, prepared, 4), dtype=np.float32)

    found = {"off": picture(0.0), "on": picture(1.0), "again": picture(1.0), "half": picture(0.5),
             "processors": {type(p).__name__ for name, p in pipe.transformer.attn_processors.items()
                            if name.startswith("transformer_blocks.")},
             "encoder": type(pipe.image_encoder).__name__}
    pipe.unload_ip_adapter()
    found["plain"] = np.asarray(run_pipeline(pipe, dataclasses.replace(prepared, ip_adapter=None), 4),
                                dtype=np.float32)
    return found


def test_weight_zero_is_the_plain_picture_and_weight_one_changes_it(loaded, pictures):
    prepared, pipe = loaded
    ip = prepared.ip_adapter
    assert (ip.kind, ip.weight, ip.encoder) == ("InstantX SD3.5, 4 image tokens", 0.5, "siglip-so400m-tiny")
    assert ip.weight_source.startswith("HF InstantX/SD3.5-Large-IP-Adapter model card")
    assert (ip.sd3_layout.blocks, ip.sd3_layout.width, ip.sd3_layout.image_features) == (2, 128, SIGLIP_WIDTH)
    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    assert pictures["processors"] == {"SD3IPAdapterJointAttnProcessor2_0"}
    assert pictures["encoder"] == "SiglipVisionModel"
    off, on = pictures["off"], pictures["on"]
    assert np.abs(off - pictures["plain"]).max() <= 2            # 8-bit pictures: rounding at most
    assert np.abs(on - off).max() > 20
    assert np.abs(pictures["half"] - off).max() > 5
    np.testing.assert_array_equal(on, pictures["again"])


def test_the_safetensors_conversion_from_the_command_line_with_instantx_weight(sd3_files, tokenizer_dir,
                                                                               t5_tokenizer_dir, files, pictures,
                                                                               tmp_path):
    from PIL import Image

    status, text = run_kubik("generate", PROMPT, *_model_flags(sd3_files, tokenizer_dir, t5_tokenizer_dir),
                             "--ip-adapter", files.converted, "--reference", files.reference, "--image-encoder",
                             files.encoder, "--out", tmp_path / "out", "--no-record")
    assert status == 0, text
    assert ("ip-adapter  sd35-large-ip-adapter.safetensors (InstantX SD3.5, 4 image tokens, encoder "
            "siglip-so400m-tiny), reference reference.png: weight 0.5 (published for InstantX's SD3.5 Large "
            "IP-Adapter (its card's example, with a text prompt): 0.5; source: HF InstantX/SD3.5-Large-IP-Adapter "
            "model card") in text
    [png] = (tmp_path / "out").glob("kubik_*.png")
    with Image.open(png) as image:
        kubik = json.loads(image.text["kubik"])
        picture = np.asarray(image, dtype=np.float32)
    assert {k: kubik["ip_adapter"][k] for k in ("file", "kind", "image_encoder", "weight")} == {
        "file": "sd35-large-ip-adapter.safetensors", "kind": "InstantX SD3.5, 4 image tokens",
        "image_encoder": "siglip-so400m-tiny", "weight": 0.5}
    # the conversion holds the release's tensors: the .bin's picture at the same weight and seed
    assert np.abs(picture - pictures["half"]).max() <= 2


def _plan(sd3_files, tokenizer_dir, t5_tokenizer_dir, tmp_path, adapter, encoder, checkpoint=None):
    from kubik_core.generate.ip_adapter import IPAdapterError
    from kubik_core.generate.run import plan_generation

    request = _request(sd3_files, tokenizer_dir, t5_tokenizer_dir, tmp_path, ip_adapter=str(adapter),
                       reference=str(tmp_path / "reference.png"), image_encoder=str(encoder))
    if checkpoint is not None:
        request.checkpoint, request.text_encoders = str(checkpoint), []
    with pytest.raises(IPAdapterError) as caught:
        plan_generation(request)
    return str(caught.value)


def _torch_file(path, data, **options):
    torch.save(data, str(path), **options)
    return path


def test_bad_adapters_and_encoders_get_one_line_before_anything_loads(sd3_files, tokenizer_dir, t5_tokenizer_dir,
                                                                      files, flux_files, tmp_path):
    from kubik_testing.tiny_ip_adapter import write_tiny_instantx_sd3_ip_adapter, write_tiny_xlabs_ip_adapter
    from kubik_testing.tiny_vision import tiny_clip_vision, tiny_siglip_vision
    from safetensors.torch import load_file, save_file

    (tmp_path / "reference.png").write_bytes(files.reference.read_bytes())
    large, good = sd3_files["large"], files.encoder

    def plan(adapter, encoder=good, checkpoint=None):
        return _plan(sd3_files, tokenizer_dir, t5_tokenizer_dir, tmp_path, adapter, encoder, checkpoint)

    xlabs = write_tiny_xlabs_ip_adapter(tmp_path / "flux-ip-adapter.safetensors", flux_files["dev"], 16)
    assert plan(xlabs) == ("--ip-adapter: flux-ip-adapter.safetensors is an XLabs FLUX.1 IP-Adapter but the "
                           "checkpoint is SD3; give InstantX's SD3.5-Large-IP-Adapter (ip-adapter.bin or its "
                           ".safetensors conversion)")
    wide = write_tiny_instantx_sd3_ip_adapter(tmp_path / "wide.safetensors", large, SIGLIP_WIDTH, width=256)
    assert plan(wide) == ("--ip-adapter: wide.safetensors is for an MMDiT 256 wide (heads of 64) but the checkpoint's "
                          "is 128 wide (SD3.5 Large or Large Turbo (q/k norms, one attention)); InstantX's IP-Adapter "
                          "is for SD3.5 Large (2432)")
    deep = write_tiny_instantx_sd3_ip_adapter(tmp_path / "deep.safetensors", large, SIGLIP_WIDTH, blocks=3)
    assert plan(deep) == ("--ip-adapter: deep.safetensors has IP attention for 3 attentions but the checkpoint's "
                          "MMDiT has 2 (SD3.5 Large or Large Turbo (q/k norms, one attention)); InstantX's IP-Adapter "
                          "is for SD3.5 Large (38 blocks)")
    # the Medium checkpoint (MMDiT-X): a second attention in block 0 makes 3 attentions
    assert "but the checkpoint's MMDiT has 3 (SD3.5 Medium" in plan(files.converted, checkpoint=sd3_files["medium"])
    tensors = load_file(str(files.converted))
    reshaped = tmp_path / "reshaped.safetensors"
    save_file({**tensors, "ip_adapter.1.to_v_ip.weight": torch.zeros(128, 64)}, str(reshaped))
    assert plan(reshaped) == ("--ip-adapter: reshaped.safetensors: 1 tensor(s) have another shape than the config "
                              "gives (blocks.1.to_v_ip.weight: file [128, 64], config [128, 128]); " + FIX)
    stray = tmp_path / "stray.safetensors"
    save_file({**tensors, "lora.down.weight": torch.zeros(2, 2)}, str(stray))
    assert plan(stray) == f"--ip-adapter: stray.safetensors: 'lora.down.weight' is not part of the layout; {FIX}"
    legacy = _torch_file(tmp_path / "legacy.bin", {"image_proj": {}, "ip_adapter": {}},
                         _use_new_zipfile_serialization=False)
    assert plan(legacy) == ("--ip-adapter: legacy.bin is not a zip-format torch file (a legacy pickle is never "
                            "opened); convert it to .safetensors where it came from, or give the released "
                            "ip-adapter.bin")
    code = _torch_file(tmp_path / "code.bin", {"image_proj": {}, "ip_adapter": {}, "x": SimpleNamespace(a=1)})
    assert plan(code).startswith("--ip-adapter: code.bin cannot be read as torch weights (")
    assert plan(code).endswith(f"; {FIX}")
    other = _torch_file(tmp_path / "other.bin", {"state_dict": {"w": torch.zeros(2)}})
    assert plan(other) == ("--ip-adapter: other.bin does not hold the two dictionaries image_proj and ip_adapter of an "
                           f"IP-Adapter; {FIX}")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(files.converted.read_bytes()[:40])
    assert plan(cut).startswith("--ip-adapter: cut.safetensors: ") and plan(cut).endswith(f"; {FIX}")
    assert "\n" not in plan(cut)
    # encoders: CLIP instead of SigLIP, a SigLIP of another width
    clip = tiny_clip_vision(tmp_path / "clip-vit")
    assert plan(files.converted, clip) == (
        "--image-encoder: clip-vit holds a clip_vision_model model, not the SigLIP vision encoder InstantX's "
        "IP-Adapters read; give google/siglip-so400m-patch14-384's folder (config.json and model.safetensors) or "
        "ComfyUI's sigclip_vision_patch14_384.safetensors")
    wide_siglip = tmp_path / "siglip-wide"
    tiny_siglip_vision(wide_siglip)
    config = json.loads((wide_siglip / "config.json").read_text())
    (wide_siglip / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    assert plan(files.converted, wide_siglip) == (
        "--image-encoder: siglip-wide gives 48-wide hidden states but sd35-large-ip-adapter.safetensors reads 32; "
        "give google/siglip-so400m-patch14-384 (the encoder InstantX trained it with)")


_NAMES = st.sampled_from(["image_proj.latents", "image_proj.proj_in.weight", "image_proj.proj_out.weight",
                          "image_proj.time_embedding.linear_1.weight", "image_proj.layers.0.0.to_q.weight",
                          "image_proj.layers.0.1.1.weight", "image_proj.layers.3.2.1.bias",
                          "ip_adapter.0.norm_q.weight", "ip_adapter.1.to_k_ip.weight", "ip_adapter.x.norm_q.weight",
                          "image_proj.layers.x.0.to_q.weight", "other.weight"])


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.dictionaries(_NAMES, st.lists(st.integers(0, 300), max_size=4).map(tuple), max_size=12))
def test_the_layout_parser_gives_a_layout_or_one_line(shapes):
    from kubik_core.generate.ip_adapter import IPAdapterError
    from kubik_core.generate.sd3_ip_adapter import inspect_sd3_adapter

    try:
        layout = inspect_sd3_adapter(shapes, "fuzz.safetensors")
    except IPAdapterError as exc:
        assert str(exc).startswith("--ip-adapter: fuzz.safetensors") and "\n" not in str(exc)
    else:
        assert layout.tokens > 0 and layout.blocks > 0 and layout.depth > 0
