"""SD3 inpainting ControlNets (alimama-creative/SD3-Controlnet-Inpainting: diffusers' layout, 17
input channels = the latent of the masked picture + the mask) with `kubik generate --mask`, through
the command line on the CPU, with tiny_sd3's checkpoint and a tiny random-weight inpainting
ControlNet written in the released key layout (tiny_sd3_controlnet.write_tiny_sd3_controlnet with
extra_conditioning_channels=1). The model is random, so no test says where the picture changes:

- the run works; the same seed gives the same picture, another mask another picture, and
  conditioning scale 0 the plain SD3 picture; the card's 0.95 is advised with its source, and the
  PNG names the control picture and the mask;
- the mask and ControlNet go together, each wrong pairing and each bad mask refused in one exact line.
64x64, 2 steps.
"""
from __future__ import annotations


import numpy as np
import pytest

from .helpers import generate_sd3, refusal, sd3_model

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    from PIL import Image

    from kubik_testing.tiny_sd3_controlnet import write_tiny_sd3_controlnet

    folder = tmp_path_factory.mktemp("sd3-inpainting")
    picture = folder / "dog.png"
    Image.fromarray((np.random.RandomState(3).rand(48, 48, 3) * 255).astype("uint8")).save(picture)
    left, right = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)     # any size: scaled to 64x64
    left[:, :20], right[:, 20:] = 255, 255
    Image.fromarray(left).save(folder / "left_mask.png")
    Image.fromarray(right).save(folder / "right_mask.png")
    return {"controlnet": write_tiny_sd3_controlnet(folder / "SD3-Controlnet-Inpainting.safetensors", seed=2,
                                                    extra_conditioning_channels=1),
            "canny": write_tiny_sd3_controlnet(folder / "SD3-Controlnet-Canny.safetensors"),
            "picture": picture, "left": folder / "left_mask.png", "right": folder / "right_mask.png",
            "folder": folder}


def _generate(sd3_files, tokenizer_dir, t5_tokenizer_dir, out, *extra) -> tuple[np.ndarray, dict, str]:
    return generate_sd3("a cat next to a puppy", sd3_files, tokenizer_dir, t5_tokenizer_dir, out, *extra)


def test_inpainting_controlnet_runs_with_a_mask(sd3_files, tokenizer_dir, t5_tokenizer_dir, files, tmp_path):
    run = (sd3_files, tokenizer_dir, t5_tokenizer_dir)
    inpaint = ("--controlnet", files["controlnet"], "--control-image", files["picture"])
    plain, _, _ = _generate(*run, tmp_path / "plain")
    left, kubik, text = _generate(*run, tmp_path / "left", *inpaint, "--mask", files["left"])
    again, _, _ = _generate(*run, tmp_path / "again", *inpaint, "--mask", files["left"])
    right, _, _ = _generate(*run, tmp_path / "right", *inpaint, "--mask", files["right"])
    off, _, _ = _generate(*run, tmp_path / "off", *inpaint, "--mask", files["left"], "--control-strength", 0)
    np.testing.assert_array_equal(left, again)      # the masked picture's VAE sample follows the seed
    assert np.abs(left - right).max() > 20           # another mask, another picture
    assert np.abs(left - plain).max() > 20
    assert np.abs(off - plain).max() <= 2            # scale 0: the plain SD3 picture (8-bit rounding)
    assert "control     inpaint: strength 0.95, 0-1" in text
    assert ("  strength: published for inpainting on sd3: 0.95 (source: HF alimama-creative/SD3-Controlnet-Inpainting "
            "model card example") in text
    control = kubik["control"]
    assert (control["control_type"], control["strength"], control["start_percent"], control["end_percent"]) == (
        "inpaint", 0.95, 0.0, 1.0)
    assert control["notes"] == ["SD3-Controlnet-Inpainting.safetensors: repaints the white of left_mask.png in the "
                                "control picture (white = repaint, black = keep)",
                                "the kept area is redrawn under the ControlNet's guidance, not pasted back (as the "
                                "card's pipeline does)"]
    assert (kubik["generate"]["control_image"], kubik["generate"]["mask"]) == ("dog.png", "left_mask.png")


def test_mask_and_inpainting_controlnet_go_together_in_one_clear_line(sd3_files, files):
    folder = files["folder"]
    not_a_picture = folder / "mask.png"
    not_a_picture.write_text("white = repaint")

    def refused(*extra):
        return refusal(*sd3_model(sd3_files), *extra)

    inpaint = ("--controlnet", files["controlnet"], "--control-image", files["picture"])
    assert refused("--mask", files["left"]) == (
        "--mask goes with an inpainting ControlNet: give --controlnet FILE --control-image IMG (the picture to "
        "repaint) with it, or drop --mask")
    assert refused(*inpaint) == (
        "--controlnet: SD3-Controlnet-Inpainting.safetensors is an inpainting ControlNet (17 input channels: the "
        "latent of the masked picture + the mask); give --mask IMG (white = repaint, black = keep) and the picture "
        "to repaint as --control-image")
    assert refused("--controlnet", files["canny"], "--control-image", files["picture"], "--mask", files["left"]) == (
        "--mask: SD3-Controlnet-Canny.safetensors is no inpainting ControlNet (it takes no mask); drop --mask, or "
        "give an SD3 inpainting ControlNet such as alimama-creative/SD3-Controlnet-Inpainting")
    assert refused(*inpaint, "--mask", folder / "absent.png") == "--mask: no file 'absent.png'"
    assert refused(*inpaint, "--mask", not_a_picture) == (
        "--mask: mask.png is not a readable picture; give a PNG or JPEG mask (white = repaint, black = keep)")
    assert refused(*inpaint, "--mask", files["left"], "--control-type", "canny") == (
        "--control-type canny: SD3-Controlnet-Inpainting.safetensors is an inpainting ControlNet (it reads the "
        "picture to repaint and --mask, no map); give --control-type auto")


def test_a_mask_with_transparency_is_read_as_comfyuis_load_image_reads_it(tmp_path):
    """ComfyUI's mask editor saves the picture with the area to repaint transparent, and LoadImage's
    MASK is 1 - alpha: read that way here too; an opaque picture is read by its grey values."""
    from PIL import Image

    from kubik_core.generate.sd3_controlnet import mask_picture

    edited = np.zeros((4, 4, 4), np.uint8)         # black everywhere, the left half made transparent
    edited[..., 3] = 255
    edited[:, :2, 3] = 0
    Image.fromarray(edited, "RGBA").save(tmp_path / "edited.png")
    opaque = np.zeros((4, 4, 4), np.uint8)         # white on the left, fully opaque
    opaque[..., 3] = 255
    opaque[:, :2, :3] = 255
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    left_white = [[255, 255, 0, 0]] * 4
    for name in ("edited.png", "opaque.png"):
        assert np.asarray(mask_picture(tmp_path / name, 4, 4)).tolist() == left_white, name
