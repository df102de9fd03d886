"""SD3/SD3.5 ControlNets in `kubik generate`, through the command line on the CPU, with tiny_sd3's
SD3.5 Large-shaped checkpoint and tiny ControlNet single files in both layouts users have
(tests/kubik_testing/tiny_sd3_controlnet.py): diffusers' (InstantX, TensorArt) and Stability's
SD3.5 Large release (reference names, control_type tensor).

- strength 0 gives the picture of the run without a ControlNet (same seed, same noise), a
  ControlNet at its advised strength changes it, and the same seed gives the same picture twice;
- Stability's layout loads every tensor, and its names converted give exactly the tensors of the
  same weights saved in diffusers' names;
- the control picture goes in as each maker's code gives it;
- bad files and mismatches give one exact line each; the header parser, fuzzed, gives a layout or one line.
64x64, 2 steps.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

from .helpers import generate_sd3, refusal, sd3_model

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def hint(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("hint") / "canny.png"
    Image.fromarray((np.random.RandomState(5).rand(48, 48, 3) * 255).astype("uint8")).save(path)
    return path


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory) -> dict:
    from kubik_testing.tiny_sd3_controlnet import write_tiny_sd3_controlnet, write_tiny_sd35_large_controlnet

    folder = tmp_path_factory.mktemp("sd3-controlnets")
    return {"instantx": write_tiny_sd3_controlnet(folder / "SD3-Controlnet-Canny.safetensors"),
            "canny": write_tiny_sd35_large_controlnet(folder / "sd3.5_large_controlnet_canny.safetensors", seed=1),
            "diffusers_large": write_tiny_sd35_large_controlnet(folder / "sd35-large-canny-diffusers.safetensors",
                                                                seed=1, layout="diffusers")}


def _generate(sd3_files, tokenizer_dir, t5_tokenizer_dir, out, *extra) -> tuple[np.ndarray, dict, str]:
    return generate_sd3("a red fox in the snow", sd3_files, tokenizer_dir, t5_tokenizer_dir, out, *extra)


def test_sd3_controlnet_strength_zero_is_the_plain_picture_and_stabilitys_canny_changes_it(
        sd3_files, tokenizer_dir, t5_tokenizer_dir, controlnets, hint, tmp_path):
    run = (sd3_files, tokenizer_dir, t5_tokenizer_dir)
    plain, _, _ = _generate(*run, tmp_path / "plain")
    off, _, _ = _generate(*run, tmp_path / "off", "--controlnet", controlnets["instantx"], "--control-image", hint,
                          "--control-type", "canny", "--control-strength", 0)
    on, kubik, text = _generate(*run, tmp_path / "on", "--controlnet", controlnets["canny"], "--control-image", hint)
    again, _, _ = _generate(*run, tmp_path / "again", "--controlnet", controlnets["canny"], "--control-image", hint)
    assert np.abs(off - plain).max() <= 2          # 8-bit pictures: rounding at most
    assert np.abs(on - plain).max() > 20
    np.testing.assert_array_equal(on, again)      # the control picture's VAE sample follows the seed
    # the file's control_type (canny) picks the type; Stability's reference figures, with their source
    assert "control     canny: strength 1, 0-1" in text
    assert "  strength: published for canny on sd3: 1 (source: Stability-AI/sd3.5 reference code" in text
    assert ("note: sd3.5_large_controlnet_canny.safetensors: the canny map goes in as Stability's reference code "
            "gives it (x * 127.5 + 0.5, Stability-AI/sd3.5 sd3_infer.py)") in text
    control = kubik["control"]
    assert (control["control_type"], control["strength"], control["end_percent"]) == ("canny", 1.0, 1.0)


def test_stabilitys_layout_loads_every_tensor_as_diffusers_names_them(sd3_files, controlnets, tmp_path):
    from safetensors.torch import load_file

    from kubik_core.checkpoints.sd3 import inspect_sd3, transformer_config
    from kubik_core.generate.controlnet import header_shapes
    from kubik_core.generate.sd3_controlnet import inspect_sd3_controlnet, load_sd3_controlnet

    part = inspect_sd3(sd3_files["large"], [sd3_files["clip_l"], sd3_files["clip_g"]]).files.transformer
    transformer = transformer_config(part.shapes, part.name)
    models = {}
    for kind in ("canny", "diffusers_large", "instantx"):
        path = controlnets[kind]
        layout = inspect_sd3_controlnet(path, header_shapes(path), transformer)
        models[kind] = load_sd3_controlnet(path, layout).state_dict()
        assert (layout.layout, layout.file_type) == {"canny": ("stability", "canny"),
                                                     "diffusers_large": ("diffusers_large", None),
                                                     "instantx": ("diffusers", None)}[kind]
    stability, diffusers_names = models["canny"], models["diffusers_large"]
    assert set(stability) == set(diffusers_names)
    assert all(torch.equal(stability[k], diffusers_names[k]) for k in stability)
    stored = load_file(str(controlnets["instantx"]))
    assert set(models["instantx"]) == set(stored)
    assert all(torch.equal(models["instantx"][k], stored[k].float()) for k in stored)
    # TensorArt's SD3.5M kind: a second attention in some blocks, RMS q/k norms, read back from the header
    from kubik_testing.tiny_sd3_controlnet import TINY_SD3_CONTROLNET_CONFIG, write_tiny_sd3_controlnet

    medium = write_tiny_sd3_controlnet(tmp_path / "SD3.5M-Controlnet-Canny.safetensors", num_layers=2,
                                       dual_attention_layers=(0,), qk_norm="rms_norm")
    config = inspect_sd3_controlnet(medium, header_shapes(medium), transformer).config
    assert config == dict(TINY_SD3_CONTROLNET_CONFIG, sample_size=128, num_layers=2, dual_attention_layers=(0,),
                          qk_norm="rms_norm", extra_conditioning_channels=0)


def test_the_control_picture_goes_in_as_each_makers_code_gives_it():
    from PIL import Image

    from kubik_core.generate.sd3_controlnet import SD3ControlNetLayout, control_picture

    picture = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    instantx, large = SD3ControlNetLayout("a", "diffusers", {}), SD3ControlNetLayout("b", "stability", {}, "canny")
    as_list = lambda tensor: [round(v, 4) for v in tensor.flatten().tolist()]    # noqa: E731
    assert as_list(control_picture(picture, instantx, "canny")) == [-1.0, 1.0, -0.6]
    assert as_list(control_picture(picture, large, "canny")) == [0.5, 128.0, 26.0]
    assert as_list(control_picture(picture, large, "depth")) == [1.0, -1.0, 0.6]
    assert as_list(control_picture(picture, large, "tile")) == [-1.0, 1.0, -0.6]


def test_hostile_sd3_controlnets_give_one_clear_line(sd3_files, controlnets, hint, tmp_path):
    from kubik_testing.tiny_controlnet import write_tiny_flux_controlnet
    from kubik_testing.tiny_sd3_controlnet import write_tiny_sd3_controlnet, write_tiny_sd35_large_controlnet
    from safetensors.torch import load_file, save_file

    from kubik_core.generate.controlnet import ControlNetError, header_shapes, inspect_controlnet
    from kubik_core.generate.flux_controlnet import inspect_flux_controlnet

    def refused(controlnet, *extra):
        return refusal(*sd3_model(sd3_files), "--controlnet", controlnet, "--control-image", hint, *extra)

    flux = write_tiny_flux_controlnet(tmp_path / "flux-canny.safetensors")
    assert refused(flux) == ("--controlnet: flux-canny.safetensors is a FLUX.1 ControlNet but the checkpoint is "
                             "SD3/SD3.5; give an SD3/SD3.5 ControlNet")
    sdxl = tmp_path / "sdxl-canny.safetensors"     # an SDXL ControlNet's cross-attention, 2048-wide text
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
               "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(640, 2048)}, str(sdxl))
    supported = ("an SD3/SD3.5 ControlNet: InstantX's SD3 or TensorArt's SD3.5M ControlNets (diffusers' layout), or "
                 "Stability's SD3.5 Large sd3.5_large_controlnet_blur|canny|depth")
    assert refused(sdxl) == (f"--controlnet: sdxl-canny.safetensors is an SDXL ControlNet but the checkpoint is "
                             f"SD3/SD3.5; give {supported}")
    # the other way round: an SD3 ControlNet on SD1.5/SDXL and on FLUX.1 checkpoints
    with pytest.raises(ControlNetError) as sd15:
        inspect_controlnet(controlnets["canny"], "sd15")
    assert str(sd15.value) == ("--controlnet: sd3.5_large_controlnet_canny.safetensors is an SD3 ControlNet but the "
                               "checkpoint is SD1.5; give an SD1.5 ControlNet")
    with pytest.raises(ControlNetError) as on_flux:
        inspect_flux_controlnet(controlnets["instantx"], header_shapes(controlnets["instantx"]), {})
    assert str(on_flux.value).startswith("--controlnet: SD3-Controlnet-Canny.safetensors is an SD3 ControlNet but "
                                         "the checkpoint is FLUX.1; give a FLUX.1 ControlNet in diffusers' layout")

    wide = write_tiny_sd3_controlnet(tmp_path / "sd35-large-width.safetensors", num_attention_heads=3,
                                     caption_projection_dim=192)
    assert refused(wide) == (
        "--controlnet: sd35-large-width.safetensors is 192 wide with 16 input channels in 2x2 patches but the MMDiT "
        "is 128 wide with 16 in 2x2; give a ControlNet trained for SD3.5 Large or Large Turbo (q/k norms, one "
        "attention) (SD3.5 Large ControlNets need SD3.5 Large, InstantX's SD3 Medium or SD3.5 Medium)")
    pooled = write_tiny_sd35_large_controlnet(tmp_path / "pooled.safetensors", pooled_projection_dim=96)
    assert refused(pooled) == (
        "--controlnet: pooled.safetensors reads no text context and a 96-wide pooled vector but the MMDiT takes 192 "
        "and 160; give a ControlNet trained for SD3.5 Large or Large Turbo (q/k norms, one attention)")
    inpaint = write_tiny_sd3_controlnet(tmp_path / "SD3-Controlnet-Inpainting.safetensors",
                                        extra_conditioning_channels=1)
    assert refused(inpaint) == (      # it runs with --mask (test_sd3_controlnet_inpainting.py)
        "--controlnet: SD3-Controlnet-Inpainting.safetensors is an inpainting ControlNet (17 input channels: the "
        "latent of the masked picture + the mask); give --mask IMG (white = repaint, black = keep) and the picture "
        "to repaint as --control-image")
    two_b = write_tiny_sd35_large_controlnet(tmp_path / "sd3.5_medium_controlnet.safetensors",
                                             pooled_projection_dim=128)     # a square vector embedding
    assert refused(two_b) == (
        "--controlnet: sd3.5_medium_controlnet.safetensors is an SD3.5 ControlNet of the 2B kind (a square vector "
        "embedding stacked on the MMDiT's, blocks fed in parallel), which diffusers' SD3ControlNetModel cannot run; "
        f"give {supported}")
    assert refused(controlnets["canny"], "--control-type", "pose") == (
        "--control-type pose: sd3.5_large_controlnet_canny.safetensors is Stability's SD3.5 Large canny ControlNet "
        "(its control_type tensor); give --control-type canny or auto")

    state = load_file(str(controlnets["canny"]))
    odd = tmp_path / "odd_type.safetensors"
    save_file({**state, "control_type": torch.tensor([7], dtype=torch.int32)}, str(odd))
    assert refused(odd) == ("--controlnet: odd_type.safetensors: control_type 7 is none of blur (0), canny (1), "
                            "depth (2); give Stability's sd3.5_large_controlnet_* file as released")
    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in state.items() if k != "controlnet_blocks.1.weight"}, str(missing))
    assert refused(missing) == ("--controlnet: missing.safetensors: the weights do not match the model its config "
                                "describes (missing 1 tensor(s): controlnet_blocks.1.weight)")
    blockless = tmp_path / "blockless.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("transformer_blocks.")}, str(blockless))
    assert refused(blockless) == ("--controlnet: blockless.safetensors: an incomplete or unknown SD3 ControlNet "
                                  "layout (no transformer_blocks.0 of a known kind); give " + supported)
    data = controlnets["canny"].read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:60])
    assert refused(truncated) == (f"--controlnet: truncated.safetensors: header length "
                                  f"{int.from_bytes(data[:8], 'little')} runs past the end of the file (60 bytes): "
                                  "the file is truncated; give a .safetensors ControlNet")
    cut = tmp_path / "cut.safetensors"             # the header intact, the tensors cut short
    cut.write_bytes(data[:-4096])
    assert refused(cut) == (f"--controlnet: cut.safetensors: tensor data ends at byte {len(data)} but the file has "
                            f"{len(data) - 4096} bytes: the file is truncated; give a .safetensors ControlNet")


def test_fuzz_sd3_controlnet_header_parser_gives_a_layout_or_one_clear_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kubik_core.generate.controlnet import ControlNetError
    from kubik_core.generate.sd3_controlnet import inspect_sd3_controlnet

    known = {"pos_embed_input.proj.weight": (128, 16, 2, 2), "pos_embed.proj.weight": (128, 16, 2, 2),
             "pos_embed.pos_embed": (1, 256, 128), "context_embedder.weight": (128, 192),
             "time_text_embed.text_embedder.linear_1.weight": (128, 160),
             "transformer_blocks.0.adaLN_modulation.1.weight": (768, 128),
             "transformer_blocks.0.attn.qkv.weight": (384, 128), "transformer_blocks.0.norm1.linear.weight": (768, 128),
             "transformer_blocks.0.attn.norm_q.weight": (64,), "transformer_blocks.0.attn2.to_q.weight": (128, 128),
             "controlnet_blocks.0.weight": (128, 128)}
    transformer = {"num_attention_heads": 2, "attention_head_dim": 64, "in_channels": 16, "patch_size": 2,
                   "pooled_projection_dim": 160, "joint_attention_dim": 192}
    dims = st.lists(st.integers(min_value=-2, max_value=4096), max_size=4).map(tuple)

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.fixed_dictionaries({"pos_embed_input.proj.weight": st.one_of(st.just((128, 16, 2, 2)), dims)},
                                 optional={k: st.one_of(st.just(v), dims) for k, v in known.items()
                                           if k != "pos_embed_input.proj.weight"}))
    def check(shapes):
        try:
            layout = inspect_sd3_controlnet("x.safetensors", shapes, transformer)
        except ControlNetError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("--controlnet: ")
            return
        assert layout.config["num_attention_heads"] == 2

    check()
