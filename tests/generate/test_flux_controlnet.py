"""FLUX.1 ControlNets in `kubik generate`, through the command line on the CPU, with tiny_flux's
tiny FLUX.1 dev and a tiny FluxControlNetModel single file in diffusers' layout
(tiny_controlnet.write_tiny_flux_controlnet).

Strength 0 gives the picture of the run without a ControlNet, strength 1 changes it; a Union file
gets the mode of its control type; the PNG's kubik JSON and the learning store keep the advice
(strength, end, mode, each with its source). 64x64, 2 steps.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

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
