"""InstantX's FLUX.1-dev IP-Adapter in `kubik generate`, on the CPU: tiny_flux's tiny FLUX.1 dev (64
wide, 2 double and 2 single blocks), tiny adapters in InstantX's released layout written from its
header (tiny_ip_adapter.write_tiny_instantx_flux_ip_adapter: ``ip-adapter.bin`` as released and its
.safetensors conversion) and a tiny SigLIP vision folder with its pooling head (tiny_vision.py).

- Weight 0 gives the picture of the same pipeline with diffusers' plain FLUX attention; weight 1
  changes it; the same seed gives the same picture; planning and loading make no connection.
- The command line with the .safetensors conversion and no weight: InstantX's 0.7 with its source;
  the same picture as the .bin at 0.7.
- Bad files and flags: the exact one line each, before any weight is loaded; the parser fuzzed.
64x64, 2 steps; the pipeline is loaded once. (The processor was also checked against InstantX's
own attention_processor.py on these tiny weights, outside the repository: the whole transformer's
output agreed to 1e-6 at weights 0, 0.7 and 1.3.)
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

PROMPT = "a red fox in the snow, watercolor"
SIGLIP_WIDTH = 32             # tiny_vision.TINY's hidden_size
FIX = "give InstantX's FLUX.1-dev-IP-Adapter ip-adapter.bin as released, or its .safetensors conversion"


@pytest.fixture(scope="module")
def files(tmp_path_factory, flux_files):
    from kubik_testing.tiny_ip_adapter import write_tiny_instantx_flux_ip_adapter
    from kubik_testing.tiny_vision import tiny_siglip_vision
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("flux-instantx")
    Image.fromarray(data.astronaut()).resize((96, 96)).save(folder / "reference.png")
    dev = flux_files["dev"]
    return SimpleNamespace(
        folder=folder, reference=folder / "reference.png", encoder=tiny_siglip_vision(folder / "siglip-so400m-tiny"),
        released=write_tiny_instantx_flux_ip_adapter(folder / "ip-adapter.bin", dev, SIGLIP_WIDTH),
        converted=write_tiny_instantx_flux_ip_adapter(folder / "flux-instantx-ip-adapter.safetensors", dev,
                                                      SIGLIP_WIDTH))


def _request(flux_files, tokenizer_dir, t5_tokenizer_dir, out, **extra):
    from kubik_core.generate import GenerateRequest

    return GenerateRequest(PROMPT, checkpoint=str(flux_files["checkpoint"]), out_dir=str(out), loras="none",
                           memory="none", device="cpu", record=False, tokenizer=tokenizer_dir,
                           t5_tokenizer=t5_tokenizer_dir, seed=3, overrides={"steps": 2, "width": 64, "height": 64},
                           **extra)


@pytest.fixture(scope="module")
def pictures(flux_files, tokenizer_dir, t5_tokenizer_dir, files, tmp_path_factory) -> dict:
    """The released .bin planned and loaded with no network; pictures at weights 0, 1 (twice) and
    0.7, then with diffusers' plain FLUX attention back in every block."""
    import socket

    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    from kubik_core.generate.flux_instantx_ip_adapter import set_scale
    from kubik_core.generate.run import load, plan_generation, run_pipeline

    def no_network(*args):
        raise AssertionError(f"a connection was attempted: {args}")

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", no_network)
    try:
        prepared = plan_generation(_request(flux_files, tokenizer_dir, t5_tokenizer_dir,
                                            tmp_path_factory.mktemp("out"), ip_adapter=str(files.released),
                                            reference=str(files.reference), image_encoder=str(files.encoder)))
        pipe, _notes = load(prepared)
    finally:
        patch.undo()

    def picture(weight: float):
        set_scale(pipe, weight)
        return np.asarray(run_pipeline(pipe, prepared, 3), dtype=np.float32)

    found = {"prepared": prepared, "processors": {type(p).__name__ for p in pipe.transformer.attn_processors.values()},
             "off": picture(0.0), "on": picture(1.0), "again": picture(1.0), "published": picture(0.7)}
    pipe.transformer.set_attn_processor(FluxAttnProcessor())
    found["plain"] = np.asarray(run_pipeline(pipe, prepared, 3), dtype=np.float32)
    return found


def test_weight_zero_is_the_plain_picture_and_weight_one_changes_it(pictures):
    ip = pictures["prepared"].ip_adapter
    assert (ip.kind, ip.weight, ip.encoder, ip.true_cfg) == ("InstantX FLUX, 4 image tokens", 0.7,
                                                             "siglip-so400m-tiny", None)
    assert ip.weight_source.startswith("HF InstantX/FLUX.1-dev-IP-Adapter infer_flux_ipa_siglip.py")
    layout = ip.instantx_flux_layout
    assert (layout.blocks, layout.width, layout.context_dim, layout.image_features) == (4, 64, 64, SIGLIP_WIDTH)
    assert pictures["processors"] == {"InstantXFluxAttnProcessor"}
    off, on = pictures["off"], pictures["on"]
    np.testing.assert_array_equal(off, pictures["plain"])
    assert np.abs(on - off).max() > 20
    assert np.abs(pictures["published"] - off).max() > 5
    np.testing.assert_array_equal(on, pictures["again"])


def test_the_safetensors_conversion_from_the_command_line_with_instantx_weight(flux_files, tokenizer_dir,
                                                                               t5_tokenizer_dir, files, pictures,
                                                                               tmp_path):
    from PIL import Image

    status, text = run_kubik("generate", PROMPT, "--checkpoint", flux_files["checkpoint"], "--tokenizer",
                             tokenizer_dir, "--t5-tokenizer", t5_tokenizer_dir, "--steps", 2, "--width", 64,
                             "--height", 64, "--seed", 3, "--loras", "none", "--device", "cpu", "--memory", "none",
                             "--ip-adapter", files.converted, "--reference", files.reference, "--image-encoder",
                             files.encoder, "--out", tmp_path / "out", "--no-record")
    assert status == 0, text
    assert ("ip-adapter  flux-instantx-ip-adapter.safetensors (InstantX FLUX, 4 image tokens, encoder "
            "siglip-so400m-tiny), reference reference.png: weight 0.7 (published for InstantX's FLUX.1-dev "
            "IP-Adapter (its example, with a text prompt): 0.7; source: HF InstantX/FLUX.1-dev-IP-Adapter") in text
    assert "true CFG" not in text
    [png] = (tmp_path / "out").glob("kubik_*.png")
    with Image.open(png) as image:
        kubik = json.loads(image.text["kubik"])
        picture = np.asarray(image, dtype=np.float32)
    assert {k: kubik["ip_adapter"][k] for k in ("file", "kind", "weight")} == {
        "file": "flux-instantx-ip-adapter.safetensors", "kind": "InstantX FLUX, 4 image tokens", "weight": 0.7}
    assert np.abs(picture - pictures["published"]).max() <= 2     # the conversion holds the release's tensors


def test_bad_adapters_encoders_and_flags_get_one_line_before_anything_loads(flux_files, sd3_files, tokenizer_dir,
                                                                            t5_tokenizer_dir, files, tmp_path):
    from kubik_testing.tiny_ip_adapter import write_tiny_instantx_flux_ip_adapter
    from safetensors.torch import load_file, save_file
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from kubik_core.generate import GenerateRequest
    from kubik_core.generate.ip_adapter import IPAdapterError
    from kubik_core.generate.run import plan_generation
    from kubik_testing.tiny_vision import TINY

    dev = flux_files["dev"]

    def plan(adapter, encoder=files.encoder, **extra):
        request = _request(flux_files, tokenizer_dir, t5_tokenizer_dir, tmp_path, ip_adapter=str(adapter),
                           reference=str(files.reference), image_encoder=str(encoder), **extra)
        with pytest.raises(IPAdapterError) as caught:
            plan_generation(request)
        return str(caught.value)

    assert plan(files.released, true_cfg=3.5) == ("--true-cfg: ip-adapter.bin is InstantX's FLUX IP-Adapter, which "
                                                  "samples without true CFG (XLabs' adapters use it); drop --true-cfg")
    wide = write_tiny_instantx_flux_ip_adapter(tmp_path / "wide.safetensors", dev, SIGLIP_WIDTH, width=128)
    assert plan(wide) == ("--ip-adapter: wide.safetensors is for a FLUX model 128 wide reading 64-wide T5 features but "
                          "this one is 64 wide with 64; give an IP-Adapter trained for this FLUX.1 model")
    short = write_tiny_instantx_flux_ip_adapter(tmp_path / "short.safetensors", dev, SIGLIP_WIDTH, blocks=3)
    assert plan(short) == ("--ip-adapter: short.safetensors has IP attention for 3 blocks but the FLUX model has 2 "
                           "double and 2 single blocks; give an IP-Adapter trained for this FLUX.1 model")
    tensors = load_file(str(files.converted))
    holes = tmp_path / "holes.safetensors"
    save_file({k: v for k, v in tensors.items() if k != "ip_adapter.2.to_v_ip.weight"}, str(holes))
    assert plan(holes) == (f"--ip-adapter: holes.safetensors: ip_adapter.2.to_k_ip/to_v_ip are missing or not [64, 64]; "
                           f"{FIX}")
    stray = tmp_path / "stray.safetensors"
    save_file({**tensors, "image_proj.proj.1.weight": torch.zeros(2)}, str(stray))
    assert plan(stray) == f"--ip-adapter: stray.safetensors: 'image_proj.proj.1.weight' is not part of the layout; {FIX}"
    torch.manual_seed(0)
    headless = tmp_path / "siglip-headless"
    SiglipVisionModel(SiglipVisionConfig(**TINY, vision_use_head=False)).save_pretrained(headless)
    assert plan(files.released, headless) == (
        "--image-encoder: siglip-headless gives no pooled embedding (no attention-pooling head, vision_model.head.*) "
        "but ip-adapter.bin reads 32-wide ones; give google/siglip-so400m-patch14-384 (the encoder InstantX trained "
        "it with)")
    # the FLUX adapter with an SD3 checkpoint
    request = GenerateRequest(PROMPT, checkpoint=str(sd3_files["large"]), out_dir=str(tmp_path), loras="none",
                              memory="none", device="cpu", record=False,
                              text_encoders=[str(sd3_files[k]) for k in ("clip_l", "clip_g", "t5xxl")],
                              ip_adapter=str(files.released), reference=str(files.reference))
    with pytest.raises(IPAdapterError) as caught:
        plan_generation(request)
    assert str(caught.value) == ("--ip-adapter: ip-adapter.bin is InstantX's FLUX.1 IP-Adapter but the checkpoint is "
                                 "SD3; give InstantX's SD3.5-Large-IP-Adapter (ip-adapter.bin or its .safetensors "
                                 "conversion)")


_NAMES = st.sampled_from(["image_proj.proj.0.weight", "image_proj.proj.0.bias", "image_proj.proj.2.weight",
                          "image_proj.proj.2.bias", "image_proj.norm.weight", "image_proj.norm.bias",
                          "ip_adapter.0.to_k_ip.weight", "ip_adapter.0.to_v_ip.weight", "ip_adapter.1.to_k_ip.weight",
                          "ip_adapter.x.to_k_ip.weight", "other.weight"])


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.dictionaries(_NAMES, st.lists(st.integers(0, 300), max_size=3).map(tuple), max_size=11))
def test_the_layout_parser_gives_a_layout_or_one_line(shapes):
    from kubik_core.generate.flux_instantx_ip_adapter import inspect_instantx_flux
    from kubik_core.generate.ip_adapter import IPAdapterError

    try:
        layout = inspect_instantx_flux(shapes, "fuzz.safetensors")
    except IPAdapterError as exc:
        assert str(exc).startswith("--ip-adapter: fuzz.safetensors") and "\n" not in str(exc)
    else:
        assert layout.tokens > 0 and layout.blocks > 0 and layout.width > 0
