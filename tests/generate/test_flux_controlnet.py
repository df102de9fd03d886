"""FLUX.1 ControlNets in `kubik generate`, through the command line on the CPU, with tiny_flux's
tiny FLUX.1 dev and a tiny FluxControlNetModel single file in diffusers' layout
(tiny_controlnet.write_tiny_flux_controlnet), or in XLabs-AI's layout built with ComfyUI's own
ControlNetFlux (tiny_controlnet.build_tiny_xlabs_controlnet), whose converted model must compute
what ComfyUI computes (the residuals repeated over the FLUX model's double blocks).

Strength 0 gives the picture of the run without a ControlNet, strength 1 changes it; a Union file
gets the mode of its control type; the PNG's kubik JSON and the learning store keep the advice
(strength, end, mode, each with its source). 64x64, 2 steps.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import run_kubik

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def hint(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("hint") / "depth.png"
    Image.fromarray((np.random.RandomState(5).rand(48, 48, 3) * 255).astype("uint8")).save(path)
    return path


def _generate(flux_files, tokenizer_dir, t5_tokenizer_dir, out, *extra) -> tuple[np.ndarray, dict, str]:
    status, text = run_kubik("generate", "a red fox in the snow", "--checkpoint", flux_files["checkpoint"],
                             "--tokenizer", tokenizer_dir, "--t5-tokenizer", t5_tokenizer_dir, "--steps", 2,
                             "--width", 64, "--height", 64, "--seed", 4, "--out", out, "--store",
                             out / "learning.sqlite3", "--loras", "none", "--device", "cpu", "--memory", "none",
                             *extra)
    assert status == 0, text
    from PIL import Image

    [png] = out.glob("kubik_*.png")
    with Image.open(png) as image:
        return np.asarray(image, dtype=np.float32), json.loads(image.text["kubik"]), text


def test_flux_controlnet_strength_zero_is_the_plain_picture_and_one_changes_it(flux_files, tokenizer_dir,
                                                                             t5_tokenizer_dir, hint, tmp_path):
    from kubik_testing.tiny_controlnet import write_tiny_flux_controlnet

    from kubik_core.learning import LearningStore

    plain_cn = write_tiny_flux_controlnet(tmp_path / "FLUX.1-dev-ControlNet-Union-Pro-2.0.safetensors")
    union = write_tiny_flux_controlnet(tmp_path / "flux-union-tiny.safetensors", seed=1, num_mode=10)
    run = (flux_files, tokenizer_dir, t5_tokenizer_dir)
    plain, _, _ = _generate(*run, tmp_path / "plain")
    off, _, _ = _generate(*run, tmp_path / "off", "--controlnet", plain_cn, "--control-image", hint,
                          "--control-strength", 0)
    on, kubik, text = _generate(*run, tmp_path / "on", "--controlnet", union, "--control-image", hint,
                                "--control-type", "depth")
    assert np.abs(off - plain).max() <= 2          # 8-bit pictures: rounding at most
    assert np.abs(on - plain).max() > 20
    # the published Union-Pro 2.0 depth figures (params/control.py), printed with their source
    assert "control     depth: strength 0.8, 0-0.8" in text
    assert "  strength: published for depth on flux: 0.8 (source: HF Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0" \
        in text
    assert "  control_mode: flux-union-tiny.safetensors is a Union ControlNet: depth is its mode 2 (source: HF " \
           "InstantX/FLUX.1-dev-Controlnet-Union" in text
    control = kubik["control"]
    assert (control["control_type"], control["strength"], control["end_percent"]) == ("depth", 0.8, 0.8)
    decisions = {d["field"]: d for d in control["decisions"]}
    assert decisions["control_mode"]["value"] == 2
    assert decisions["end_percent"]["source"].startswith("HF Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0")
    [row] = LearningStore(str(tmp_path / "on" / "learning.sqlite3")).rows("generations")
    params = json.loads(row["params"]) if isinstance(row["params"], str) else row["params"]
    assert params["control"]["control_type"] == "depth" and params["control"]["strength"] == 0.8


def test_a_flux_controlnet_loads_every_tensor_of_the_file(tmp_path):
    import torch
    from kubik_testing.tiny_controlnet import TINY_FLUX_CONTROLNET_CONFIG, write_tiny_flux_controlnet
    from safetensors.torch import load_file

    from kubik_core.checkpoints.flux import rotary_axes
    from kubik_core.generate.controlnet import header_shapes
    from kubik_core.generate.flux_controlnet import control_mode, inspect_flux_controlnet, load_flux_controlnet

    path = write_tiny_flux_controlnet(tmp_path / "union.safetensors", num_mode=10)
    transformer = dict(TINY_FLUX_CONTROLNET_CONFIG, num_layers=2, num_single_layers=2)
    layout = inspect_flux_controlnet(path, header_shapes(path), transformer)
    assert layout.config == dict(TINY_FLUX_CONTROLNET_CONFIG, num_mode=10, axes_dims_rope=rotary_axes(32, "x"))
    assert control_mode(layout, "softedge") == (0, "union.safetensors is a Union ControlNet without a softedge "
                                                   "mode: the nearest, canny (0)")
    model = load_flux_controlnet(path, layout)
    stored = load_file(str(path))
    loaded = model.state_dict()
    assert set(loaded) == set(stored) and all(torch.equal(loaded[k], stored[k].float()) for k in loaded)


@pytest.fixture(scope="module")
def xlabs(tmp_path_factory, flux_files):
    """The tiny XLabs ControlNet (named as XLabs' depth v3) and ComfyUI's reference pass on it."""
    from kubik_testing.tiny_controlnet import build_tiny_xlabs_controlnet

    from .conftest import _need_comfyui

    return build_tiny_xlabs_controlnet(tmp_path_factory.mktemp("xlabs") / "flux-depth-controlnet-v3.safetensors",
                                       _need_comfyui())


def _packed(latent):
    """A latent [B, 16, H, W] as FLUX's sequence of 2x2 patches, and its image positions."""
    import torch

    b, c, h, w = latent.shape
    sequence = latent.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return sequence, ids.reshape(-1, 3)


def test_an_xlabs_controlnet_computes_what_comfyui_computes(xlabs):
    """ComfyUI's ControlNetFlux residuals, and ComfyUI's FLUX step with them (4 double blocks, so the
    2 residuals repeat 0, 1, 0, 1) at strength 0.6, against the converted FluxControlNetModel and
    FluxTransformer2DModel as FluxControlNetPipeline calls them (controlnet_blocks_repeat)."""
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file

    from kubik_core.checkpoints.flux import _convert_transformer, transformer_config
    from kubik_core.generate.controlnet import header_shapes
    from kubik_core.generate.flux_controlnet import inspect_flux_controlnet, load_flux_controlnet, xlabs_to_diffusers

    path, reference = xlabs
    ref = load_file(str(reference))
    model_state = {k.removeprefix("model."): v for k, v in ref.items() if k.startswith("model.")}
    config = transformer_config({k: tuple(v.shape) for k, v in model_state.items()}, "reference")
    layout = inspect_flux_controlnet(path, header_shapes(path), config)
    assert (layout.layout, layout.config["num_layers"], layout.config["conditioning_embedding_channels"]) == \
        ("xlabs", 2, 16)
    controlnet = load_flux_controlnet(path, layout)
    stored = xlabs_to_diffusers(load_file(str(path)))
    assert controlnet.state_dict().keys() == stored.keys()         # every tensor of the file, nothing else
    on_gpu = load_flux_controlnet(path, layout, torch.bfloat16).state_dict()     # what a GPU run loads
    assert all(v.dtype == torch.bfloat16 and torch.equal(v, stored[k].to(torch.bfloat16)) for k, v in on_gpu.items())
    transformer = FluxTransformer2DModel.from_config(config)
    transformer.load_state_dict(_convert_transformer(model_state, 64), strict=True)
    hidden, img_ids = _packed(ref["x"])
    inputs = dict(hidden_states=hidden, encoder_hidden_states=ref["context"], pooled_projections=ref["y"],
                  timestep=ref["timesteps"], guidance=ref["guidance"], img_ids=img_ids,
                  txt_ids=torch.zeros(ref["context"].shape[1], 3))
    hint = ref["hint"] * 2 - 1         # the pipeline's image processor: 0..1 -> -1..1, as ComfyUI's hint * 2 - 1
    with torch.no_grad():
        residuals, _ = controlnet(controlnet_cond=hint, conditioning_scale=1.0, return_dict=False, **inputs)
        for number, residual in enumerate(residuals):
            torch.testing.assert_close(residual, ref[f"control.{number}"], atol=1e-5, rtol=1e-5)
        scaled, single = controlnet(controlnet_cond=hint, conditioning_scale=float(ref["strength"]),
                                    return_dict=False, **inputs)
        step = {repeat: transformer(**inputs, controlnet_block_samples=scaled, controlnet_single_block_samples=single,
                                    controlnet_blocks_repeat=repeat).sample for repeat in (True, False)}
    b, c, h, w = ref["x"].shape
    out = step[True].reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    torch.testing.assert_close(out, ref["out"], atol=1e-4, rtol=1e-4)
    assert (ref["out"] - ref["plain"]).abs().max() > 0.5           # the ControlNet matters in the reference
    assert (step[False] - step[True]).abs().max() > 0.1            # and so does the repetition


def test_an_xlabs_controlnet_at_strength_zero_is_the_plain_picture_and_at_its_advice_changes_it(
        flux_files, tokenizer_dir, t5_tokenizer_dir, hint, xlabs, tmp_path):
    run = (flux_files, tokenizer_dir, t5_tokenizer_dir)
    plain, _, _ = _generate(*run, tmp_path / "plain")
    off, _, _ = _generate(*run, tmp_path / "off", "--controlnet", xlabs[0], "--control-image", hint,
                          "--control-strength", 0)
    on, kubik, text = _generate(*run, tmp_path / "on", "--controlnet", xlabs[0], "--control-image", hint,
                                "--control-type", "depth")
    assert np.abs(off - plain).max() <= 2
    assert np.abs(on - plain).max() > 20
    assert "control     depth: strength 0.7, 0-1" in text
    assert "  strength: published for depth on flux: 0.7 (source: XLabs-AI/x-flux-comfyui workflows/" in text
    control = kubik["control"]
    assert (control["strength"], control["start_percent"], control["end_percent"]) == (0.7, 0.0, 1.0)
    decisions = {d["field"]: d for d in control["decisions"]}
    assert "control_mode" not in decisions                 # one control type per XLabs file
    assert decisions["end_percent"]["source"].startswith("XLabs-AI/x-flux-comfyui nodes.py")


def _xlabs_variant(source, path, change):
    """The tiny XLabs file's tensors with ``change(state)`` applied, saved as ``path``."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(source))
    change(state)
    save_file({k: v.clone() for k, v in state.items()}, str(path))     # a tensor reused under two names too
    return path


def _renamed(state, old, new):
    state[new] = state.pop(old)


def _extra_block(state):
    for key in [k for k in state if k.startswith("double_blocks.1.")]:
        state[key.replace("double_blocks.1.", "double_blocks.2.")] = state[key].clone()


def _as_mistoline(state):
    """The tiny XLabs file in the key layout of TheMistoAI's mistoline_flux.dev_v1 (their
    MistoControlNetFluxDev): SiLU-gated ``controlnet_blocks.N.linear``, a single block with its own
    ``single_controlnet_blocks.N.linear`` and the ten-convolution ``input_cond_block.encoder``."""
    import torch

    for key in [k for k in state if k.startswith("controlnet_blocks.")]:
        _renamed(state, key, key.replace(".weight", ".linear.weight").replace(".bias", ".linear.bias"))
    for key in [k for k in state if k.startswith("input_hint_block.")]:
        _renamed(state, key, key.replace("input_hint_block.", "input_cond_block.encoder."))
    for index in (16, 18):
        for part in ("weight", "bias"):
            state[f"input_cond_block.encoder.{index}.{part}"] = state[f"input_cond_block.encoder.14.{part}"].clone()
    width = state["img_in.weight"].shape[0]
    head = state["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    single = {"linear1": (7 * width, width), "linear2": (width, 5 * width), "modulation.lin": (3 * width, width)}
    for key, (rows, columns) in single.items():
        state[f"single_blocks.0.{key}.weight"] = torch.randn(rows, columns)
        state[f"single_blocks.0.{key}.bias"] = torch.randn(rows)
    for norm in ("query_norm", "key_norm"):
        state[f"single_blocks.0.norm.{norm}.scale"] = torch.ones(head)
    state["single_controlnet_blocks.0.linear.weight"] = torch.randn(width, width)
    state["single_controlnet_blocks.0.linear.bias"] = torch.randn(width)


XLABS_NAME = "flux-hed-controlnet-v3.safetensors"
SUPPORTED = ("a FLUX.1 ControlNet in diffusers' layout (InstantX Canny or Union, Shakker-Labs Union-Pro or Union-Pro "
             "2.0) or XLabs-AI's (flux-canny/depth/hed-controlnet)")


@pytest.mark.parametrize("change, message", [
    (_as_mistoline,
     "is TheMistoAI's MistoLine FLUX ControlNet (controlnet_blocks.N.linear), whose maker adds its single-block "
     "residuals to the text tokens too, which diffusers' FLUX transformer cannot take; run it in ComfyUI with "
     f"TheMistoAI's MistoControlNet-Flux-dev nodes, or give {SUPPORTED}"),
    (lambda s: s.update({"single_blocks.0.linear2.weight": s["controlnet_blocks.0.weight"]}),
     "is an XLabs-layout FLUX ControlNet with single blocks, which XLabs' releases do not have and diffusers would "
     f"add without XLabs' repetition; give {SUPPORTED}"),
    (lambda s: s.update({"img_in.weight": s["img_in.weight"].repeat(2, 1)}),
     "is 128 wide with 64 input channels but the FLUX model is 64 wide with 64; give a ControlNet trained for this "
     "FLUX.1 model"),
    (lambda s: s.update({"txt_in.weight": s["txt_in.weight"].repeat(1, 2)}),
     "reads 128-wide T5 and 64-wide CLIP features but the FLUX model takes 64 and 64; give a ControlNet trained for "
     "this FLUX.1 model"),
    (_extra_block,
     "has 3 double blocks, more than the FLUX model's 2; give a ControlNet trained for this FLUX.1 model"),
    (lambda s: s.pop("double_blocks.1.txt_mlp.2.weight"),
     ": an incomplete or unknown XLabs FLUX ControlNet layout (double_blocks.1.txt_mlp.2.weight)"),
    (lambda s: s.pop("input_hint_block.14.weight"),
     ": an incomplete or unknown XLabs FLUX ControlNet layout (input_hint_block.14.weight)"),
    (lambda s: s.update({"input_hint_block.16.weight": s["input_hint_block.14.weight"]}),
     ": the weights do not match the model its config describes (unexpected 1 tensor(s): "
     "input_hint_block.16.weight)"),
    (lambda s: s.update({"input_hint_block.12.weight": s["input_hint_block.12.weight"][:8]}),
     ": 1 tensor(s) have another shape than the config gives (input_hint_block.blocks.5.weight: file [8, 16, 3, 3], "
     "config [16, 16, 3, 3])"),
])
def test_bad_xlabs_controlnets_are_one_clear_line(flux_files, tokenizer_dir, t5_tokenizer_dir, hint, xlabs, tmp_path,
                                                  change, message):
    from .helpers import refusal

    bad = _xlabs_variant(xlabs[0], tmp_path / XLABS_NAME, change)
    line = refusal("--checkpoint", flux_files["checkpoint"], "--tokenizer", tokenizer_dir, "--t5-tokenizer",
                   t5_tokenizer_dir, "--controlnet", bad, "--control-image", hint)
    assert line == f"--controlnet: {XLABS_NAME}{'' if message.startswith(':') else ' '}{message}"


def test_an_xlabs_file_cut_short_after_its_check_is_one_clear_line(xlabs, tmp_path):
    """The header passed, then the file changed under it (a download still writing it): the load says
    so in one line instead of safetensors' traceback."""
    from kubik_testing.tiny_controlnet import TINY_FLUX_CONTROLNET_CONFIG

    from kubik_core.generate.controlnet import ControlNetError, header_shapes
    from kubik_core.generate.flux_controlnet import inspect_flux_controlnet, load_flux_controlnet

    path = tmp_path / XLABS_NAME
    path.write_bytes(xlabs[0].read_bytes())
    layout = inspect_flux_controlnet(path, header_shapes(path), dict(TINY_FLUX_CONTROLNET_CONFIG, num_layers=2))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ControlNetError) as caught:
        load_flux_controlnet(path, layout)
    assert str(caught.value).startswith(f"--controlnet: {XLABS_NAME}: its tensors cannot be read (")
    assert "\n" not in str(caught.value)


def test_xlabs_advice_is_xlabs_own_and_names_the_types_it_trained():
    from kubik_core.params.control import advise_control

    advice = advise_control(None, "flux_dev", "pose", XLABS_NAME, xlabs=True)
    assert (advice.strength, advice.start_percent, advice.end_percent) == (0.7, 0.0, 1.0)
    sources = {d.field: d.source for d in advice.decisions}
    assert sources["strength"].startswith("XLabs-AI/x-flux-comfyui workflows/flux-controlnet-{canny,depth,hed}-v3")
    assert sources["start_percent"] == sources["end_percent"]
    assert sources["end_percent"].startswith("XLabs-AI/x-flux-comfyui nodes.py: Apply Flux ControlNet start 0.0, end 1.0")
    assert "XLabs-AI trained canny, depth and hed (soft edge) ControlNets, none for pose: give the control picture its " \
           "ControlNet was trained on" in advice.notes
    assert advise_control(None, "flux_dev", "pose", XLABS_NAME).strength == 0.9       # Union-Pro 2.0's pose figure


def test_mistoline_advice_is_its_makers_line_art_figure():
    from kubik_core.params.control import advise_control

    advice = advise_control(None, "flux_dev", "lineart", "mistoline_flux.dev_v1.safetensors")
    assert (advice.strength, advice.start_percent, advice.end_percent) == (0.6, 0.0, 1.0)
    sources = {d.field: d.source for d in advice.decisions}
    assert sources["strength"].startswith("TheMistoAI/MistoControlNet-Flux-dev README (MistoLine_Flux.dev_v1)")
    assert sources["end_percent"] == sources["strength"]
    assert "mistoline_flux.dev_v1.safetensors: its own card's figures are used" in advice.notes
    assert advise_control(None, "flux_dev", "depth", "mistoline_flux.dev_v1.safetensors").strength == 0.8  # not lines


def test_a_mistoline_file_is_told_from_an_xlabs_one_by_its_keys(xlabs, tmp_path):
    """Kubik Control Advice gives XLabs' figures to what controlnet_kind calls flux_xlabs: a MistoLine
    file, BFL-named too, must not be one of them."""
    from kubik_core.generate.controlnet import controlnet_kind

    mistoline = _xlabs_variant(xlabs[0], tmp_path / "mistoline_flux.dev_v1.safetensors", _as_mistoline)
    assert (controlnet_kind(mistoline), controlnet_kind(xlabs[0])) == ("flux_mistoline", "flux_xlabs")


_ODD_KEYS = ["single_blocks.0.linear2.weight", "controlnet_blocks.0.linear.weight", "double_blocks.7.img_attn.qkv.weight",
             "input_hint_block.16.weight", "input_hint_block.x.weight", "double_blocks.x.img_mod.lin.weight",
             "pos_embed_input.proj.weight", "controlnet_x_embedder.weight", "img_in.weight", "txt_in.weight"]


@pytest.fixture(scope="module")
def xlabs_header(xlabs):
    from kubik_core.generate.controlnet import header_shapes

    return header_shapes(xlabs[0])


@settings(derandomize=True, max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drop=st.sets(st.integers(0, 85), max_size=3),
       reshape=st.dictionaries(st.integers(0, 85), st.lists(st.integers(0, 300), max_size=4), max_size=2),
       add=st.dictionaries(st.sampled_from(_ODD_KEYS), st.lists(st.integers(1, 300), max_size=4), max_size=2))
def test_fuzz_xlabs_headers_give_a_layout_or_one_clear_line(xlabs_header, drop, reshape, add):
    """Any header near a real XLabs one (tensors missing, reshaped, or odd ones added): a checked
    layout or one clear line, never another exception."""
    from kubik_testing.tiny_controlnet import TINY_FLUX_CONTROLNET_CONFIG

    from kubik_core.generate.controlnet import ControlNetError
    from kubik_core.generate.flux_controlnet import inspect_flux_controlnet

    keys = sorted(xlabs_header)
    shapes = {k: s for i, (k, s) in enumerate(zip(keys, map(xlabs_header.get, keys))) if i not in drop}
    shapes.update({keys[i]: tuple(s) for i, s in reshape.items() if i < len(keys)})
    shapes.update({k: tuple(s) for k, s in add.items()})
    try:
        layout = inspect_flux_controlnet(XLABS_NAME, shapes, dict(TINY_FLUX_CONTROLNET_CONFIG, num_layers=2))
    except ControlNetError as exc:
        assert str(exc).startswith("--controlnet: ") and "\n" not in str(exc)
        return
    assert layout.config["num_layers"] >= 1
