"""Our generated LoRA files load through ComfyUI's own key mapping with no key left over.

Runs when $COMFYUI_DIR points at a ComfyUI checkout that imports (CPU); skipped otherwise.
The key map is built by ComfyUI's comfy.lora.model_lora_keys_unet / model_lora_keys_clip from
the state-dict key names of SDXL's UNet and text encoders (stand-ins that carry only the names,
so no 2.6-billion-parameter model is built), then comfy.lora.load_lora maps each file.
ComfyUI is imported in a child process, so this session's pack stays "outside ComfyUI".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
REPO = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent('''
    import json, logging, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.lora, comfy.utils
    from kubik_core.loras.synthetic import lora_tensors

    # ComfyUI comfy/model_detection.py's SDXL UNet configuration (the fields key mapping reads).
    SDXL_UNET = {"num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
                 "transformer_depth": [0, 0, 2, 2, 10, 10],
                 "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
                 "transformer_depth_middle": 10, "context_dim": 2048, "model_channels": 320,
                 "use_linear_in_transformer": True}

    class Keys:
        def __init__(self, keys, unet_config=None):
            self._keys = dict.fromkeys(keys)
            self.model_config = type("Config", (), {"unet_config": unet_config or {}})()
        def state_dict(self):
            return self._keys

    unet = ["diffusion_model." + v for v in comfy.utils.unet_to_diffusers(SDXL_UNET).values()]
    key_map = comfy.lora.model_lora_keys_unet(Keys(unet, SDXL_UNET), {})
    clip = [f"{p}.transformer.text_model.encoder.layers.{b}.{c}.weight"
            for p, n in (("clip_l", 12), ("clip_g", 32)) for b in range(n) for c in comfy.lora.LORA_CLIP_MAP]
    key_map = comfy.lora.model_lora_keys_clip(Keys(clip), key_map)

    unloaded = []
    class Catch(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("lora key not loaded: "):
                unloaded.append(record.getMessage()[len("lora key not loaded: "):])
    logging.getLogger().addHandler(Catch())
    result = {}
    for layout in ("kohya", "diffusers", "peft", "locon", "loha", "lokr"):
        unloaded.clear()
        lora = lora_tensors(layout, "sdxl", rank=2)
        patches = comfy.lora.load_lora(lora, key_map)
        result[layout] = {"patches": len(patches), "unloaded": sorted(unloaded), "keys": sorted(lora)}
    print("KUBIK-RESULT " + json.dumps(result))
''')


@pytest.fixture(scope="module")
def comfy_result():
    if not COMFYUI_DIR or not os.path.isdir(COMFYUI_DIR):
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to check LoRA keys against comfy.lora")
    proc = subprocess.run([sys.executable, "-c", _CHILD, COMFYUI_DIR, str(REPO)], capture_output=True,
                          text=True, timeout=300)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("KUBIK-RESULT ")), None)
    if line is None:
        pytest.skip(f"ComfyUI at {COMFYUI_DIR} does not import here: {proc.stderr.strip()[-400:]}")
    return json.loads(line[len("KUBIK-RESULT "):])


@pytest.mark.parametrize("layout, modules", [("kohya", 7), ("diffusers", 5), ("locon", 8), ("loha", 7),
                                             ("lokr", 7)])
def test_generated_sdxl_lora_leaves_no_key_unloaded(comfy_result, layout, modules):
    assert comfy_result[layout]["unloaded"] == []
    assert comfy_result[layout]["patches"] == modules


def test_peft_unet_keys_are_the_ones_the_scan_warns_about(comfy_result, tmp_path):
    from kubik_core.loras import scan_library
    from kubik_core.loras.synthetic import write_lora

    peft = comfy_result["peft"]
    assert peft["unloaded"] == [k for k in peft["keys"] if k.startswith("unet.")]
    write_lora(tmp_path / "peft.safetensors", "peft", "sdxl")
    (entry,) = scan_library([tmp_path]).entries.values()
    assert any("ComfyUI's LoRA loader does not map" in p for p in entry.problems)
