"""`kubik generate` and `kubik rate` on bad input: one clear line, exit status 2, nothing loaded.

The checkpoints here are small safetensors files the test writes with the key names of each
family (a few tensors, tiny shapes): the family is read from the header alone, so every error
below comes before any weight is read. No ComfyUI is needed.
"""
from __future__ import annotations

import contextlib
import io
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from kubik_core.cli import main
from kubik_core.generate.controlnet import ControlNetError
from kubik_core.generate.ip_adapter import IPAdapterError, reference_image
from kubik_core.generate.loras import GenerateLoraError, parse_explicit
from kubik_core.generate.run import GenerateError, _control_image
from kubik_core.generate.sd3_controlnet import mask_picture

pytestmark = pytest.mark.timeout(120)

SD15_KEYS = {
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (8, 768),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
}


def _file(path, keys, metadata=None):
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path), metadata=metadata)
    return path


def _run(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, err.getvalue().strip()


@pytest.fixture()
def sd15(tmp_path):
    return _file(tmp_path / "header_only_sd15.safetensors", SD15_KEYS)


def _generate(checkpoint, tmp_path, *extra):
    return _run("generate", "a fox", "--checkpoint", checkpoint, "--out", tmp_path / "out",
                "--store", tmp_path / "store.sqlite3", "--loras", "none", "--device", "cpu", *extra)


SUPPORTED = ("; kubik generate loads SD1.5, SDXL (incl. Pony and Illustrious), SD3/SD3.5 and FLUX.1 (dev, "
             "schnell) models offline")


@pytest.mark.parametrize("name, keys, message", [
    ("sd2.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": (4, 4),
                         "cond_stage_model.model.token_embedding.weight": (8, 1024)},
     "the checkpoint holds SD2.x" + SUPPORTED),
    ("lora.safetensors", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 4)},
     "the checkpoint holds no Stable Diffusion model (no model.diffusion_model.* tensors)" + SUPPORTED),
    # FLUX and SD3 files are loaded; a header missing their parts names the first one missing
    ("flux.safetensors", {"double_blocks.0.img_attn.qkv.weight": (4, 4)},
     "flux.safetensors: its FLUX transformer does not have FLUX.1's layout (no img_in.weight of the expected "
     "shape)"),
    ("chroma.safetensors", {"double_blocks.0.img_attn.qkv.weight": (4, 4),
                            "distilled_guidance_layer.norms.0.scale": (4,)},
     "chroma.safetensors holds a Chroma model (FLUX without CLIP conditioning); kubik generate loads FLUX.1 dev "
     "and schnell"),
    ("sd3.safetensors", {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4, 4)},
     "sd3.safetensors: its MMDiT does not have SD3's layout (no x_embedder.proj.weight of the expected shape)"),
])
def test_unsupported_families_are_named_with_what_is_supported(tmp_path, name, keys, message):
    status, err = _generate(_file(tmp_path / name, keys), tmp_path)
    assert status == 2
    assert err == f"kubik generate: error: {message}"


def test_text_encoders_and_vae_are_refused_for_sd_checkpoints(sd15, tmp_path):
    status, err = _generate(sd15, tmp_path, "--vae", sd15)
    assert (status, err) == (2, "kubik generate: error: --text-encoders and --vae go with FLUX and SD3.5 models; "
                                "header_only_sd15.safetensors is an SD1.5 checkpoint that holds its own")


def test_a_file_that_is_not_safetensors_is_one_line(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    status, err = _generate(bad, tmp_path)
    assert status == 2 and err.startswith("kubik generate: error: model.safetensors") and "\n" not in err
    assert err.endswith("; the checkpoint must be a .safetensors file")
    assert str(tmp_path) not in err


def test_a_missing_checkpoint_names_the_flag(tmp_path):
    status, err = _generate(tmp_path / "nope.safetensors", tmp_path)
    assert (status, err) == (2, "kubik generate: error: --checkpoint: no file 'nope.safetensors'; give a "
                                ".safetensors checkpoint")


@pytest.mark.parametrize("extra, message", [
    (("-n", "0"), "-n: 0 images; give 1 to 64"),
    (("--width", "65"), "--width: 65; give a multiple of 8 from 64 to 4096"),
    (("--height", "99999"), "--height: 99999; give a multiple of 8 from 64 to 4096"),
    (("--seed", "-1"), "--seed: -1 is not a seed from 0 to 2^63-1"),
    (("--memory", "balanced"), "--memory balanced needs a CUDA GPU (it offloads weights from the GPU to the "
                               "CPU); on this machine use none or aggressive, or auto"),
    (("--memory", "sequential"), "--memory sequential needs a CUDA GPU (it offloads weights from the GPU to "
                                 "the CPU); on this machine use none or aggressive, or auto"),
    (("--family", "sdxl"), "--family sdxl: the checkpoint is sd15; give a family of that architecture or auto"),
])
def test_bad_flags_are_one_clear_line(sd15, tmp_path, extra, message):
    status, err = _generate(sd15, tmp_path, *extra)
    assert (status, err) == (2, f"kubik generate: error: {message}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "store.sqlite3").exists()


def test_the_dry_run_of_a_good_header_plans_and_loads_nothing(sd15, tmp_path):
    status, err = _generate(sd15, tmp_path, "--dry-run")
    assert status == 0, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, message", [
    ("style:abc", "--loras: 'style:abc' is not name:strength (a number, e.g. style.safetensors:0.8)"),
    ("style:nan", "--loras: strength nan of 'style' is outside -10..10"),
    ("style:99", "--loras: strength 99 of 'style' is outside -10..10"),
    ("a:1:2:3", "--loras: 'a:1:2:3' is not name:strength (a number, e.g. style.safetensors:0.8)"),
    ("absent:0.5", "--loras: no LoRA 'absent' in loras; `kubik loras scan DIR` lists them"),
    ("../outside:1", "--loras: LoRA name '../outside' leaves the loras folder; use a name from ComfyUI's LoRA "
                     "list (relative to the loras folder)"),
])
def test_bad_lora_lists_are_one_clear_line(sd15, tmp_path, value, message):
    (tmp_path / "loras").mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    status, err = _run("generate", "a fox", "--checkpoint", sd15, "--out", tmp_path / "out", "--device", "cpu",
                       "--loras", value, "--lora-dir", tmp_path / "loras")
    assert (status, err) == (2, f"kubik generate: error: {message}")


def test_a_lora_folder_that_does_not_exist(sd15, tmp_path):
    status, err = _run("generate", "a fox", "--checkpoint", sd15, "--loras", "a:1", "--lora-dir",
                       tmp_path / "missing", "--device", "cpu")
    assert (status, err) == (2, f"kubik generate: error: --lora-dir: not a folder: {tmp_path / 'missing'}")


def test_rate_refuses_an_unknown_id_and_a_missing_store(tmp_path):
    status, err = _run("rate", "abc", "3", "--store", tmp_path / "none.sqlite3")
    assert (status, err) == (2, f"kubik rate: error: no learning store at {tmp_path / 'none.sqlite3'} yet: "
                                "generate with kubik generate first, or pass --store")
    from kubik_core.learning import LearningStore

    LearningStore(str(tmp_path / "store.sqlite3"))
    status, err = _run("rate", "abc", "3", "--store", tmp_path / "store.sqlite3")
    assert status == 2 and err.startswith("kubik rate: error: generation 'abc' is not in the learning store")


def _controlnet(tmp_path, width=768):
    return _file(tmp_path / "cn.safetensors", {
        "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, width)})


@pytest.mark.parametrize("make, message", [
    (lambda t: ("--controlnet", _controlnet(t)),
     "--controlnet and --control-image go together: give both or neither"),
    (lambda t: ("--controlnet", _controlnet(t), "--control-image", t / "absent.png"),
     "--control-image: no file 'absent.png'"),
    (lambda t: ("--controlnet", _controlnet(t), "--control-image", _text(t / "hint.png")),
     "--control-image: hint.png is not a readable picture; give a PNG or JPEG control map"),
    (lambda t: ("--controlnet", _controlnet(t), "--control-image", _png(t), "--control-strength", "3"),
     "--control-strength: 3; give 0 to 2"),
    (lambda t: ("--controlnet", _controlnet(t, 2048), "--control-image", _png(t)),
     "--controlnet: cn.safetensors is an SDXL ControlNet but the checkpoint is SD1.5; give an SD1.5 ControlNet"),
    (lambda t: ("--controlnet", _file(t / "lora.safetensors", {"lora_unet_x.lora_down.weight": (2, 2)}),
                "--control-image", _png(t)),
     "--controlnet: lora.safetensors is not a ControlNet (no input_hint_block.* or controlnet_cond_embedding.* "
     "tensors); give a ControlNet .safetensors from ComfyUI's models/controlnet"),
])
def test_bad_control_inputs_are_one_clear_line(sd15, tmp_path, make, message):
    status, err = _generate(sd15, tmp_path, *make(tmp_path))
    assert (status, err) == (2, "kubik generate: error: " + message)


def _text(path):
    path.write_text("not a picture")
    return path


def _png(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "hint.png")
    return tmp_path / "hint.png"


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_lora_lists_give_a_stack_or_a_clear_error(tmp_path_factory, value):
    folder = tmp_path_factory.getbasetemp() / "fuzz-loras"
    folder.mkdir(exist_ok=True)
    (folder / "style.safetensors").write_bytes(b"x")
    try:
        stack = parse_explicit(value, [str(folder)])
    except (GenerateLoraError, ValueError) as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for item in stack.items:
        assert item.path == str((folder / "style.safetensors").resolve())
        assert -10 <= item.strength_model <= 10 and -10 <= item.strength_clip <= 10


def test_a_prompt_swallowed_by_text_encoders_is_named_as_the_fault(sd15, tmp_path):
    # --text-encoders takes every word after it: a prompt written last ends up among the files.
    status, err = _run("generate", "--checkpoint", sd15, "--text-encoders", tmp_path / "clip_l.safetensors",
                       "a fox in the snow")
    assert status == 2 and err == ("kubik generate: error: no prompt: --text-encoders takes every word after it as "
                                   "a file, so put the prompt first: kubik generate \"PROMPT\" --checkpoint FILE "
                                   "--text-encoders FILE ...")
    status, err = _run("generate", "--checkpoint", sd15)
    assert status == 2 and err == "kubik generate: error: no prompt: kubik generate \"PROMPT\" --checkpoint FILE"


# Pictures PIL refuses to decode: a small PNG whose header claims 20000 x 20000 pixels (a
# "decompression bomb") makes PIL raise DecompressionBombError, which is no OSError or ValueError
# and used to escape as a traceback.
TOO_LARGE = "is larger than 178,956,970 pixels, too large to read safely; scale it down and save it again"


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (20000, 20000)).save(path, optimize=True)   # ~50 kB on disk, 400 M pixels
    assert path.stat().st_size < 100_000
    return path


@pytest.mark.parametrize("read, error, flag", [
    (lambda p: _control_image(p, 8, 8), GenerateError, "--control-image"),
    (lambda p: mask_picture(p, 8, 8), ControlNetError, "--mask"),
    (reference_image, IPAdapterError, "--reference"),
])
def test_a_decompression_bomb_is_one_line_for_every_picture_flag(bomb, read, error, flag):
    with pytest.raises(error) as caught:
        read(bomb)
    assert str(caught.value) == f"{flag}: bomb.png {TOO_LARGE}"


def test_the_command_refuses_a_bomb_as_control_image_in_one_line(sd15, tmp_path, bomb):
    status, err = _generate(sd15, tmp_path, "--controlnet", _controlnet(tmp_path), "--control-image", bomb)
    assert (status, err) == (2, f"kubik generate: error: --control-image: bomb.png {TOO_LARGE}")


@pytest.mark.parametrize("flags, message", [
    (lambda t, bad: ("--controlnet", _controlnet(t), "--control-image", bad),
     "--control-image: hint\\nrm -rf.png is not a readable picture; give a PNG or JPEG control map"),
    (lambda t, bad: ("--ip-adapter", _text(t / "ip.safetensors"), "--reference", bad),
     "--reference: hint\\nrm -rf.png is not a readable picture; give a PNG or JPEG"),
])
def test_a_file_name_with_a_line_break_stays_whole_on_the_one_line(sd15, tmp_path, flags, message):
    """The error line used to stop inside such a name ("--reference: hint"), losing the rest of
    the name and the fix; the name is now written escaped."""
    bad = _text(tmp_path / "hint\nrm -rf.png")
    status, err = _generate(sd15, tmp_path, "--dry-run", *flags(tmp_path, bad))
    assert (status, err) == (2, f"kubik generate: error: {message}")


def test_a_16_bit_grey_mask_keeps_its_greys(tmp_path):
    """PIL converts 16-bit grey to 8 bits by clipping: a 30% grey (20000 of 65535) became white, so
    the area to keep was repainted; the values are now scaled by 1/256."""
    import numpy
    from PIL import Image

    Image.fromarray(numpy.array([[0, 20000, 40000, 65535]], numpy.uint16)).save(tmp_path / "mask16.png")
    assert Image.open(tmp_path / "mask16.png").mode == "I;16"
    assert numpy.asarray(mask_picture(tmp_path / "mask16.png", 4, 1)).tolist() == [[0, 78, 156, 255]]
