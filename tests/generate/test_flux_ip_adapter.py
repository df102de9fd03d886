"""XLabs-AI FLUX.1 IP-Adapters in `kubik generate`, on the CPU: tiny_flux's tiny FLUX.1 dev (64 wide,
2 double blocks), tiny XLabs-layout adapters written from its header (v1: 4 image tokens, v2: 16;
tiny_ip_adapter.write_tiny_xlabs_ip_adapter) and a tiny CLIP vision encoder folder (tiny_vision.py),
all real files.

- Weight 0 gives exactly the picture of diffusers' FluxPipeline with the same settings and no
  adapter (true CFG included); weight 1 changes it, and so does XLabs' true CFG against none.
- The command line end to end with a v2 file and no weight: XLabs' published weight and true CFG
  printed with their sources and kept in the PNG's kubik JSON.
- A FLUX ControlNet (diffusers' layout) and the IP-Adapter together: weight 0 gives the ControlNet
  run's picture, weight 1 changes it.
- Bad files and flags: the exact one line kubik generate refuses them with, before any weight is
  loaded; the header parser fuzzed.
64x64, 2 steps; each pipeline is loaded once.
"""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import refusal, run_kubik

pytestmark = pytest.mark.timeout(600)

PROMPT = "a red fox in the snow, watercolor"
ENCODER_PROJECTION = 16       # tiny_vision.TINY's projection_dim


@pytest.fixture(scope="module")
def files(tmp_path_factory, flux_files):
    """The reference photograph, a control map, the tiny CLIP vision folder and the adapters."""
    from kubik_testing.tiny_ip_adapter import write_tiny_xlabs_ip_adapter
    from kubik_testing.tiny_vision import tiny_clip_vision
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("flux-ip")
    Image.fromarray(data.astronaut()).resize((96, 96)).save(folder / "reference.png")
    Image.fromarray((np.random.RandomState(2).rand(48, 48, 3) * 255).astype("uint8")).save(folder / "hint.png")
    return SimpleNamespace(
        folder=folder, reference=folder / "reference.png", hint=folder / "hint.png", flux_dev=flux_files["dev"],
        encoder=tiny_clip_vision(folder / "clip_vision" / "tiny_encoder"),
        v1=write_tiny_xlabs_ip_adapter(folder / "flux-ip-adapter.safetensors", flux_files["dev"], ENCODER_PROJECTION),
        v2=write_tiny_xlabs_ip_adapter(folder / "flux-ip-adapter-v2.safetensors", flux_files["dev"],
                                       ENCODER_PROJECTION, tokens=16, seed=1))


def _request(flux_files, tokenizer_dir, t5_tokenizer_dir, out, **extra):
    from kubik_core.generate import GenerateRequest

    return GenerateRequest(PROMPT, checkpoint=str(flux_files["checkpoint"]), out_dir=str(out), loras="none",
                           memory="none", device="cpu", record=False, tokenizer=tokenizer_dir,
                           t5_tokenizer=t5_tokenizer_dir, seed=3, overrides={"steps": 2, "width": 64, "height": 64},
                           **extra)


def _difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).max())


class _Recorder:
    """``pipe`` for everything but its call, which is recorded instead of run."""

    def __init__(self, pipe):
        self.pipe, self.kwargs = pipe, {}

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        self.kwargs = kwargs
        return SimpleNamespace(images=[None])


def _pipeline_call(pipe, prepared, seed: int) -> dict:
    """The arguments run_pipeline gives the diffusers pipeline ``pipe`` for ``prepared``."""
    from kubik_core.generate.run import run_pipeline

    recorder = _Recorder(pipe)
    run_pipeline(recorder, prepared, seed)
    return recorder.kwargs


def _without_adapter(pipe, prepared, seed: int):
    """The picture of the same pipeline call with the adapter unloaded (settings kept)."""
    import torch

    kwargs = {k: v for k, v in _pipeline_call(pipe, prepared, seed).items() if k != "ip_adapter_image"}
    pipe.unload_ip_adapter()
    with torch.inference_mode():
        return pipe(**kwargs).images[0]


def test_weight_zero_is_the_plain_picture_and_weight_one_changes_it(flux_files, tokenizer_dir, t5_tokenizer_dir,
                                                                    files, tmp_path, monkeypatch):
    import socket

    from kubik_core.generate.run import load, plan_generation, run_pipeline

    def no_network(*args):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)     # planning and loading stay offline
    prepared = plan_generation(_request(flux_files, tokenizer_dir, t5_tokenizer_dir, tmp_path,
                                        ip_adapter=str(files.v1), reference=str(files.reference),
                                        image_encoder=str(files.encoder)))
    ip = prepared.ip_adapter
    assert (ip.kind, ip.weight, ip.true_cfg) == ("XLabs v1", 1.0, 3.5)
    assert ip.flux_layout.tokens == 4 and ip.flux_layout.blocks == 2
    pipe, _notes = load(prepared)
    monkeypatch.undo()
    assert type(pipe).__name__ == "FluxPipeline"
    assert type(pipe.transformer.transformer_blocks[1].attn.processor).__name__ == "FluxIPAdapterAttnProcessor"
    call = _pipeline_call(pipe, prepared, 3)
    assert call["true_cfg_scale"] == 3.5 and call["negative_prompt"] == "" and call["ip_adapter_image"].size == (96, 96)

    def picture(weight: float, true_cfg: float = 3.5):
        pipe.set_ip_adapter_scale(weight)
        plan = dataclasses.replace(prepared.ip_adapter, true_cfg=true_cfg)
        return np.asarray(run_pipeline(pipe, dataclasses.replace(prepared, ip_adapter=plan), 3))

    off, on, on_without_true_cfg = picture(0.0), picture(1.0), picture(1.0, 1.0)
    plain = np.asarray(_without_adapter(pipe, prepared, 3))
    assert np.array_equal(off, plain)
    assert _difference(on, off) > 20
    assert _difference(on, on_without_true_cfg) > 20


def test_a_v2_adapter_from_the_command_line_with_xlabs_published_settings(flux_files, tokenizer_dir,
                                                                          t5_tokenizer_dir, files, tmp_path):
    from PIL import Image

    status, text = run_kubik("generate", PROMPT, "--checkpoint", flux_files["checkpoint"], "--tokenizer",
                             tokenizer_dir, "--t5-tokenizer", t5_tokenizer_dir, "--steps", 2, "--width", 64,
                             "--height", 64, "--loras", "none", "--device", "cpu", "--memory", "none",
                             "--ip-adapter", files.v2, "--reference", files.reference, "--image-encoder",
                             files.encoder, "--out", tmp_path / "out", "--no-record")
    assert status == 0, text
    assert ("ip-adapter  flux-ip-adapter-v2.safetensors (XLabs v2, encoder tiny_encoder), reference reference.png: "
            "weight 1 (published for XLabs' FLUX IP-Adapter, with or without a text prompt: 1; source: "
            "XLabs-AI/x-flux main.py (--ip_scale default 1.0") in text
    assert ("  true CFG 3.5 (published: XLabs sample their IP-Adapter with true CFG 3.5 (a second pass each step with "
            "the negative prompt and a black reference); source: XLabs-AI/x-flux README") in text
    assert "note: true CFG 3.5 for the XLabs IP-Adapter: two passes of the model a step" in text
    [png] = (tmp_path / "out").glob("kubik_*.png")
    with Image.open(png) as image:
        kubik = json.loads(image.text["kubik"])
    assert {k: kubik["ip_adapter"][k] for k in ("file", "kind", "image_encoder", "weight", "true_cfg")} == {
        "file": "flux-ip-adapter-v2.safetensors", "kind": "XLabs v2", "image_encoder": "tiny_encoder",
        "weight": 1.0, "true_cfg": 3.5}
    assert kubik["ip_adapter"]["true_cfg_source"].startswith("XLabs-AI/x-flux README")
    assert "true CFG 3.5" in kubik["explanation"]


def test_a_flux_controlnet_and_the_ip_adapter_together(flux_files, tokenizer_dir, t5_tokenizer_dir, files,
                                                       tmp_path):
    from kubik_testing.tiny_controlnet import write_tiny_flux_controlnet

    from kubik_core.generate.run import load, plan_generation, run_pipeline

    controlnet = write_tiny_flux_controlnet(tmp_path / "flux-instantx-canny.safetensors")
    prepared = plan_generation(_request(
        flux_files, tokenizer_dir, t5_tokenizer_dir, tmp_path, controlnet=str(controlnet),
        control_image=str(files.hint), control_type="canny", ip_adapter=str(files.v1),
        reference=str(files.reference), image_encoder=str(files.encoder), true_cfg=1.0))
    pipe, _notes = load(prepared)
    assert type(pipe).__name__ == "FluxControlNetPipeline"

    def picture(weight: float):
        pipe.set_ip_adapter_scale(weight)
        return np.asarray(run_pipeline(pipe, prepared, 3))

    off, on = picture(0.0), picture(1.0)
    assert np.array_equal(off, np.asarray(_without_adapter(pipe, prepared, 3)))
    assert _difference(on, off) > 20


def _sd_adapter(path, width=768):
    import torch
    from safetensors.torch import save_file

    save_file({"image_proj.proj.weight": torch.zeros(4 * width, 16), "image_proj.proj.bias": torch.zeros(4 * width),
               "image_proj.norm.weight": torch.zeros(width), "image_proj.norm.bias": torch.zeros(width),
               "ip_adapter.1.to_k_ip.weight": torch.zeros(320, width)}, str(path))
    return path


def _edited(path, source, drop=(), add=None):
    """``source``'s tensors without ``drop`` and with ``add``, written to ``path``."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(str(source)).items() if k not in drop}
    save_file({**tensors, **(add or {})}, str(path))
    return path


def _truncated(path, source):
    data = source.read_bytes()
    path.write_bytes(data[:8 + int.from_bytes(data[:8], "little") + 100])
    return path


FIX = ("give XLabs' flux-ip-adapter .safetensors (v1 or v2) or InstantX's FLUX.1-dev-IP-Adapter for a FLUX.1 "
       "checkpoint")
AS_RELEASED = "give XLabs' flux-ip-adapter .safetensors (v1 or v2) as released"


@pytest.mark.parametrize("make, extra, message", [
    (lambda f, t: _sd_adapter(t / "ip-adapter_sd15.safetensors"), (),
     f"--ip-adapter: ip-adapter_sd15.safetensors is an IP-Adapter for SD1.5 but the checkpoint is FLUX.1; {FIX}"),
    (lambda f, t: _sd_adapter(t / "instantx.safetensors", 4096), (),
     "--ip-adapter: instantx.safetensors is an IP-Adapter in h94's layout (image_proj.*, ip_adapter.*) but the "
     f"checkpoint is FLUX.1; {FIX}"),
    (lambda f, t: _edited(t / "lora.safetensors", f.v1, drop=list(_keys(f.v1))), (),
     "--ip-adapter: lora.safetensors is not a FLUX.1 IP-Adapter (no ip_adapter_proj_model.* and "
     f"double_blocks.*.processor.ip_adapter_double_stream_* tensors); {FIX}"),
    (lambda f, t: _xlabs(t, f, context=32), (),
     "--ip-adapter: ip.safetensors is for a FLUX model 64 wide reading 32-wide T5 features but this one is 64 wide "
     "with 64; give an IP-Adapter trained for this FLUX.1 model"),
    (lambda f, t: _xlabs(t, f, blocks=19), (),
     "--ip-adapter: ip.safetensors has IP attention for 19 double blocks but the FLUX model has 2; give an "
     "IP-Adapter trained for this FLUX.1 model"),
    (lambda f, t: _xlabs(t, f, embed=768), (),
     "--image-encoder: tiny_encoder gives 16-wide projected image embeddings but ip.safetensors reads 768; give "
     "CLIP ViT-L/14 (openai/clip-vit-large-patch14's model.safetensors or ComfyUI's clip_vision ViT-L)"),
    (lambda f, t: _truncated(t / "ip.safetensors", f.v1), (),
     "--ip-adapter: ip.safetensors: tensor data ends at byte 43704 but the file has 1564 bytes: the file is "
     "truncated; give the IP-Adapter .safetensors (ComfyUI's models/ipadapter)"),
    (lambda f, t: _edited(t / "ip.safetensors", f.v1,
                          drop=["double_blocks.1.processor.ip_adapter_double_stream_v_proj.bias"]), (),
     "--ip-adapter: ip.safetensors: double_blocks.1.processor.ip_adapter_double_stream_v_proj.bias is missing or not "
     f"[64]; {AS_RELEASED}"),
    (lambda f, t: _edited(t / "ip.safetensors", f.v1, drop=["ip_adapter_proj_model.norm.bias"]), (),
     f"--ip-adapter: ip.safetensors: no ip_adapter_proj_model.norm.bias; {AS_RELEASED}"),
    (lambda f, t: _edited(t / "ip.safetensors", f.v1, add={"double_blocks.0.processor.qkv_lora1.down.weight":
                                                              _zeros(4, 64)}), (),
     f"--ip-adapter: ip.safetensors: 'double_blocks.0.processor.qkv_lora1.down.weight' is not part of the layout; "
     f"{AS_RELEASED}"),
    (lambda f, t: f.v1, ("--true-cfg", "20"), "--true-cfg: 20; give 1 (off) to 10"),
])
def test_bad_flux_ip_adapters_are_one_clear_line(flux_files, files, tmp_path, make, extra, message):
    adapter = make(files, tmp_path)
    assert refusal("--checkpoint", flux_files["checkpoint"], "--ip-adapter", adapter, "--reference",
                   files.reference, "--image-encoder", files.encoder, *extra) == message


def test_an_xlabs_adapter_with_an_sd_checkpoint_and_true_cfg_without_flux(sd15_checkpoint, files):
    assert refusal("--checkpoint", sd15_checkpoint, "--ip-adapter", files.v1, "--reference", files.reference,
                   "--image-encoder", files.encoder) == (
        "--ip-adapter: flux-ip-adapter.safetensors is an XLabs FLUX.1 IP-Adapter but the checkpoint is SD1.5; give an "
        "IP-Adapter of the checkpoint's family")
    assert refusal("--checkpoint", sd15_checkpoint, "--true-cfg", "3") == (
        "--true-cfg goes with a FLUX.1 checkpoint and --ip-adapter (XLabs' true CFG); drop it")


def _zeros(*shape):
    import torch

    return torch.zeros(*shape)


def _keys(path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def _xlabs(tmp_path, files, embed=ENCODER_PROJECTION, **widths):
    from kubik_testing.tiny_ip_adapter import write_tiny_xlabs_ip_adapter

    return write_tiny_xlabs_ip_adapter(tmp_path / "ip.safetensors", files.flux_dev, embed, **widths)


_SHAPES = {"ip_adapter_proj_model.proj.weight": (8, 3), "ip_adapter_proj_model.proj.bias": (8,),
           "ip_adapter_proj_model.norm.weight": (2,), "ip_adapter_proj_model.norm.bias": (2,),
           "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight": (5, 2),
           "double_blocks.0.processor.ip_adapter_double_stream_k_proj.bias": (5,),
           "double_blocks.0.processor.ip_adapter_double_stream_v_proj.weight": (5, 2),
           "double_blocks.0.processor.ip_adapter_double_stream_v_proj.bias": (5,),
           "double_blocks.2.processor.ip_adapter_double_stream_k_proj.weight": (5, 2),
           "image_proj.norm.weight": (2,)}


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(_SHAPES)), st.lists(st.integers(0, 9), min_size=1, max_size=3)
                       | st.sampled_from(list(_SHAPES.values())), max_size=10))
def test_fuzz_xlabs_headers_give_a_layout_or_one_clear_line(shapes):
    from kubik_core.generate.flux_ip_adapter import FluxIPAdapterError, inspect_flux_adapter

    try:
        layout = inspect_flux_adapter({k: tuple(v) for k, v in shapes.items()}, "fuzz.safetensors")
    except FluxIPAdapterError as exc:
        assert str(exc).startswith("--ip-adapter: fuzz.safetensors: ") and "\n" not in str(exc)
        return
    assert layout.tokens >= 1 and layout.blocks >= 1 and layout.hidden_dim >= 1 and layout.context_dim >= 1


@pytest.mark.parametrize("tokens, kind", [(4, "XLabs v1"), (16, "XLabs v2")])
def test_the_released_sizes_fit_flux1_and_diffusers_modules_on_the_meta_device(tokens, kind):
    """XLabs' released files at FLUX.1's real widths (T5 4096, FLUX 3072 with 24 heads of 128, 19
    double blocks, CLIP ViT-L/14's 768): the header checks pass and every tensor has its place in
    diffusers' modules, built on the meta device (no memory)."""
    import torch

    from kubik_core.common.weights import check_matches
    from kubik_core.generate.flux_ip_adapter import (_module_name, _modules, check_against_flux,
                                                     inspect_flux_adapter)

    shapes = {"ip_adapter_proj_model.proj.weight": (tokens * 4096, 768),
              "ip_adapter_proj_model.proj.bias": (tokens * 4096,),
              "ip_adapter_proj_model.norm.weight": (4096,), "ip_adapter_proj_model.norm.bias": (4096,)}
    for number in range(19):
        for which in ("k", "v"):
            stem = f"double_blocks.{number}.processor.ip_adapter_double_stream_{which}_proj"
            shapes.update({f"{stem}.weight": (3072, 4096), f"{stem}.bias": (3072,)})
    layout = inspect_flux_adapter(shapes, "ip_adapter.safetensors")
    assert (layout.kind, layout.tokens, layout.image_features, layout.blocks) == (kind, tokens, 768, 19)
    check_against_flux(layout, {"num_attention_heads": 24, "attention_head_dim": 128, "joint_attention_dim": 4096,
                                "num_layers": 19})
    with torch.device("meta"):
        modules = _modules(layout, 1.0)
    check_matches(modules, {_module_name(k): v for k, v in shapes.items()}, "ip_adapter.safetensors")



def test_the_estimate_counts_the_adapter_files_and_the_steps_true_cfg_and_a_controlnet_add(
        flux_files, tokenizer_dir, t5_tokenizer_dir, files, tmp_path):
    """Planning only: the ControlNet, IP-Adapter and encoder weigh in the peak with everything loaded; a
    ControlNet lengthens each step by its share of the transformer, true CFG doubles it (the time
    factor: FLUX has no CPU time estimate to multiply)."""
    from kubik_testing.tiny_controlnet import write_tiny_flux_controlnet

    from kubik_core.common.safetensors_file import read_header
    from kubik_core.generate.memory import estimate_strategies
    from kubik_core.generate.run import _adapter_bytes, _step_cost, plan_generation

    def plan(**extra):
        return plan_generation(_request(flux_files, tokenizer_dir, t5_tokenizer_dir, tmp_path, **extra))

    def peaks(prepared):
        return {e.strategy: e.peak_bytes for e in prepared.choice.estimates}

    def float32_bytes(path):
        return sum(4 * int(np.prod(shape)) for _, shape in read_header(path).tensors.values())

    plain = plan()
    with_adapter = plan(ip_adapter=str(files.v1), reference=str(files.reference), image_encoder=str(files.encoder))
    adapter_bytes = float32_bytes(files.v1) + float32_bytes(files.encoder / "model.safetensors")
    assert peaks(with_adapter)["none"] - peaks(plain)["none"] == adapter_bytes
    controlnet = write_tiny_flux_controlnet(tmp_path / "flux-instantx-canny.safetensors")
    with_control = plan(controlnet=str(controlnet), control_image=str(files.hint), control_type="canny")
    assert peaks(with_control)["none"] - peaks(plain)["none"] == float32_bytes(controlnet)

    extras = _adapter_bytes(with_control.request, None)
    share = float32_bytes(controlnet) / plain.info.component_bytes["transformer"]
    assert _step_cost(plain.info.component_bytes, extras, False) == pytest.approx(1 + share)
    assert _step_cost(plain.info.component_bytes, {}, True) == 2.0
    timed = {e.strategy: e.seconds for e in estimate_strategies({"unet": 1}, 1, 64, 64, 1, False, 10.0, 2.5)}
    untimed = {e.strategy: e.seconds for e in estimate_strategies({"unet": 1}, 1, 64, 64, 1, False, 10.0)}
    assert all(timed[s] == pytest.approx(2.5 * untimed[s]) for s in timed)
