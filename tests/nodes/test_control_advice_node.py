"""Kubik Control Advice runs as ComfyUI runs it; its outputs fit ControlNetApplyAdvanced."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CORE_NODES = Path(__file__).resolve().parents[1] / "kubik_testing" / "core_nodes.json"


def _run(run_node, **changes):
    widgets = dict(control_type="auto", family="sdxl", ip_adapter_use="auto")
    return run_node("KubikControlAdvice", **{**widgets, **changes})


def test_outputs_match_controlnet_apply_advanced_inputs(run_node, node_classes):
    cls = node_classes["KubikControlAdvice"]
    core = json.loads(CORE_NODES.read_text())["nodes"]["ControlNetApplyAdvanced"]["inputs"]
    for name in ("strength", "start_percent", "end_percent"):
        assert core[name]["type"] == cls.RETURN_TYPES[cls.RETURN_NAMES.index(name)] == "FLOAT"
        assert core[name]["category"] == "required"


def test_flux_pose_from_a_plan(run_node, analyze):
    plan = run_node("KubikParameterOptimizer", family="flux_dev", priority="balanced", aspect_ratio="auto",
                    mode="AUTO", device="cpu", steps=0, cfg=0.0, sampler_name="auto", scheduler="auto",
                    width=0, height=0, guidance=0.0)[0]
    analysis = analyze("portrait of a dancer in a red dress, full body, dynamic pose, studio lighting, photo")
    advice, strength, start, end, weight, kind, summary = _run(run_node, family="auto", plan=plan,
                                                               analysis=analysis)
    # FLUX.1's IP-Adapter weight is XLabs' 1.0, with or without a text prompt
    assert (kind, strength, start, end, weight) == ("pose", 0.9, 0.0, 0.65, 1.0)
    assert advice.family == "flux_dev" and "Shakker-Labs" in summary


def test_image_prompt_only_and_a_named_controlnet(run_node, analyze):
    out = _run(run_node, family="flux_dev", control_type="canny", ip_adapter_use="image prompt only",
               analysis=analyze("a red apple"), controlnet_name="instantx_flux_canny.safetensors")
    assert out[1] == 0.6 and out[4] == 1.0


def test_auto_family_needs_a_plan(run_node):
    with pytest.raises(ValueError, match="^family: 'auto' needs a plan"):
        _run(run_node, family="auto")


def test_an_xlabs_file_of_the_controlnet_folder_gets_xlabs_figures(run_node, monkeypatch, tmp_path):
    """Told by its keys, as kubik generate tells it: the same name outside the folder, or a file of
    another layout, keeps the FLUX table's figure."""
    import sys
    import types

    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "controlnet"
    folder.mkdir()
    xlabs = {"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2), "controlnet_blocks.0.weight": torch.zeros(2, 2)}
    save_file(xlabs, folder / "flux-depth-controlnet-v3.safetensors")
    save_file({"controlnet_x_embedder.weight": torch.zeros(2, 2)}, folder / "instantx-union.safetensors")
    (folder / "broken.safetensors").write_bytes(b"\x00" * 4)
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_full_path = lambda kind, name: (str(folder / name) if kind == "controlnet"
                                                     and (folder / name).is_file() else None)
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)

    def strength(name):
        return _run(run_node, family="flux_dev", control_type="depth", controlnet_name=name)[1]

    assert strength("flux-depth-controlnet-v3.safetensors") == 0.7         # XLabs' workflows
    for other in ("instantx-union.safetensors", "broken.safetensors", "missing.safetensors", ""):
        assert strength(other) == 0.8                                      # Union-Pro 2.0's depth figure
