"""Our generated LoRA files load through ComfyUI's own key mapping with no key left over.

Runs when $COMFYUI_DIR points at a ComfyUI checkout that imports (CPU); skipped otherwise.
The key map is built by ComfyUI's comfy.lora.model_lora_keys_unet / model_lora_keys_clip from
the state-dict key names of SDXL's UNet and text encoders (stand-ins that carry only the names,
so no 2.6-billion-parameter model is built), then comfy.lora.load_lora maps the file.
"""
from __future__ import annotations

import logging
import os
import sys

import pytest

from kubik_core.loras.synthetic import lora_tensors

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")


@pytest.fixture(scope="module")
def comfy():
    if not COMFYUI_DIR or not os.path.isdir(COMFYUI_DIR):
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to check LoRA keys against comfy.lora")
    sys.path.insert(0, COMFYUI_DIR)
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        import comfy.lora
        import comfy.utils
    except Exception as exc:  # noqa: BLE001 - any import failure means "no usable ComfyUI here"
        pytest.skip(f"ComfyUI at {COMFYUI_DIR} does not import here: {exc}")
    return comfy


# ComfyUI comfy/model_detection.py's SDXL UNet configuration (the fields key mapping reads).
SDXL_UNET = {"num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
             "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
             "context_dim": 2048, "model_channels": 320, "use_linear_in_transformer": True}


class _Keys:
    """A model stand-in: only its state-dict key names and config, which is all key mapping reads."""

    def __init__(self, keys, unet_config=None):
        self._keys = dict.fromkeys(keys)
        self.model_config = type("Config", (), {"unet_config": unet_config or {}})()

    def state_dict(self):
        return self._keys


def _sdxl_key_map(comfy):
    unet_keys = ["diffusion_model." + v for v in comfy.utils.unet_to_diffusers(SDXL_UNET).values()]
    key_map = comfy.lora.model_lora_keys_unet(_Keys(unet_keys, SDXL_UNET), {})
    clip_keys = []
    for prefix, layers in (("clip_l", 12), ("clip_g", 32)):
        for b in range(layers):
            for c in comfy.lora.LORA_CLIP_MAP:
                clip_keys.append(f"{prefix}.transformer.text_model.encoder.layers.{b}.{c}.weight")
    return comfy.lora.model_lora_keys_clip(_Keys(clip_keys), key_map)


def _unloaded(comfy, lora, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        patches = comfy.lora.load_lora(lora, _sdxl_key_map(comfy))
    prefix = "lora key not loaded: "
    return patches, [r.getMessage()[len(prefix):] for r in caplog.records if r.getMessage().startswith(prefix)]


@pytest.mark.parametrize("layout, modules", [("kohya", 7), ("diffusers", 5)])
def test_generated_sdxl_lora_leaves_no_key_unloaded(comfy, caplog, layout, modules):
    patches, unloaded = _unloaded(comfy, lora_tensors(layout, "sdxl", rank=2), caplog)
    assert unloaded == []
    assert len(patches) == modules


def test_peft_unet_keys_are_the_ones_the_scan_warns_about(comfy, caplog, tmp_path):
    from kubik_core.loras import scan_library
    from kubik_core.loras.synthetic import write_lora

    lora = lora_tensors("peft", "sdxl", rank=2)
    _patches, unloaded = _unloaded(comfy, lora, caplog)
    assert sorted(unloaded) == sorted(k for k in lora if k.startswith("unet."))
    write_lora(tmp_path / "peft.safetensors", "peft", "sdxl")
    (entry,) = scan_library([tmp_path]).entries.values()
    assert any("ComfyUI's LoRA loader does not map" in p for p in entry.problems)
