"""Kubik Parameter Optimizer and Kubik Explain run as ComfyUI runs them (pack loaded renamed)."""
from __future__ import annotations

import sys
import types

import pytest
import torch
from safetensors.torch import save_file

WIDGETS = dict(family="sdxl", priority="balanced", aspect_ratio="auto", mode="AUTO", device="cpu",
               steps=0, cfg=0.0, sampler_name="auto", scheduler="auto", width=0, height=0, guidance=0.0)


def _run(run_node, **changes):
    return run_node("KubikParameterOptimizer", **{**WIDGETS, **changes})


def _stand_in_folder_paths(monkeypatch, tmp_path, get_full_path):
    """A local stand-in for ComfyUI's folder_paths module, where the bridge asks for paths."""
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_full_path = get_full_path
    folder_paths.get_user_directory = lambda: str(tmp_path / "user")
    folder_paths.get_output_directory = lambda: str(tmp_path / "output")
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)


def test_outputs_link_into_ksampler(run_node, node_classes):
    cls = node_classes["KubikParameterOptimizer"]
    plan, steps, cfg, sampler, scheduler, width, height, guidance, summary = _run(run_node)
    assert (steps, cfg, sampler, scheduler, width, height) == (plan.steps, plan.cfg, plan.sampler_name,
                                                               plan.scheduler, plan.width, plan.height)
    assert sampler in cls.RETURN_TYPES[3] and scheduler in cls.RETURN_TYPES[4]  # KSampler's combo lists
    assert guidance == 0.0 and "sdxl" in summary and "\n" not in summary


def test_flux_guidance_output(run_node):
    out = _run(run_node, family="flux_dev")
    assert out[2] == 1.0 and out[7] == 3.5


def test_auto_family_needs_a_model(run_node):
    with pytest.raises(ValueError, match="^family: 'auto' needs a MODEL"):
        _run(run_node, family="auto")


def test_auto_family_from_the_model_and_its_checkpoint_metadata(run_node, make_model, tmp_path, monkeypatch):
    checkpoint = tmp_path / "checkpoints" / "model_0042.safetensors"
    checkpoint.parent.mkdir()
    save_file({"w": torch.zeros(1)}, str(checkpoint), metadata={"modelspec.title": "Pony Diffusion V6 XL"})
    _stand_in_folder_paths(monkeypatch, tmp_path, lambda folder, name: str(tmp_path / folder / name))
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model_0042.safetensors"}},
             "7": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["4", 0]}}}
    model = make_model(["SDXL", "BaseModel"], "SDXL", {"context_dim": 2048})
    plan = _run(run_node, family="auto", model=model, prompt=graph, unique_id="7")[0]
    assert plan.family == "pony" and plan.clip_skip == -2
    assert "metadata" in plan.decisions[0].reason


def test_unreadable_checkpoint_falls_back_to_its_name(run_node, make_model, tmp_path, monkeypatch):
    bad = tmp_path / "sdxl_lightning_4step.safetensors"
    bad.write_bytes(b"\xff" * 4)
    _stand_in_folder_paths(monkeypatch, tmp_path, lambda folder, name: str(bad))
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": bad.name}},
             "7": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["4", 0]}}}
    plan = _run(run_node, family="auto", model=make_model(["SDXL", "BaseModel"], "SDXL"),
                prompt=graph, unique_id="7")[0]
    assert plan.family == "sdxl_lightning" and plan.steps == 4
    assert ("model: could not read the metadata of checkpoint sdxl_lightning_4step.safetensors "
            "(truncated safetensors file (4 bytes, no header length)); the family is detected from "
            "its name only") in plan.notes


def test_unknown_model_runs_with_fallback(run_node, make_model):
    plan = _run(run_node, family="auto", model=make_model(["Mystery", "BaseModel"], "MysteryConfig"))[0]
    assert plan.family == "sdxl" and plan.family_confidence == 0.0
    text = run_node("KubikExplain", verbosity="standard", plan=plan)["result"][0]
    assert "could not be recognised" in text


def test_not_a_model_names_the_input(run_node):
    with pytest.raises(ValueError, match="^model:"):
        _run(run_node, family="auto", model=object())


def test_assisted_overrides_through_the_node(run_node):
    plan, steps, cfg, sampler, *_ = _run(run_node, mode="ASSISTED", steps=18, sampler_name="euler")
    assert (steps, sampler) == (18, "euler") and plan.overrides == {"steps": 18, "sampler_name": "euler"}
    assert plan.suggested["steps"] == 30


def test_bad_override_names_the_input(run_node):
    with pytest.raises(ValueError, match="^width: 1001 is not a multiple of 8"):
        _run(run_node, mode="MANUAL", width=1001)


def test_explain_node_shows_text(run_node, analyze):
    analysis = analyze("watercolor painting of a fox in a snowy forest")
    plan = _run(run_node, analysis=analysis)[0]
    out = run_node("KubikExplain", verbosity="detailed", analysis=analysis, plan=plan)
    text = out["result"][0]
    assert out["ui"] == {"text": [text]} and "Sampling:" in text and "fox" in text
    assert run_node("KubikExplain", verbosity="minimal")["result"][0].startswith("Nothing to explain")


def test_the_optimizer_starts_hashing_the_checkpoint_it_reads(pack, run_node, make_model, tmp_path, monkeypatch):
    """Kubik Save Image's A1111 Model hash is the checkpoint's SHA-256: hashing starts here, in
    the background, so that it is ready by the time the image is saved."""
    import hashlib
    import importlib
    import json

    checkpoint = tmp_path / "checkpoints" / "model_0042.safetensors"
    checkpoint.parent.mkdir()
    save_file({"w": torch.zeros(64)}, str(checkpoint), metadata={"modelspec.title": "SDXL 1.0"})
    _stand_in_folder_paths(monkeypatch, tmp_path, lambda folder, name: str(tmp_path / folder / name))
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model_0042.safetensors"}},
             "7": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["4", 0]}}}
    model = make_model(["SDXL", "BaseModel"], "SDXL", {"context_dim": 2048})
    _run(run_node, family="auto", model=model, prompt=graph, unique_id="7")
    hashes = importlib.import_module(f"{pack.__name__}.kubik_core.learning.model_hashes")
    assert hashes.hash_cache(tmp_path / "user" / "kubik").wait(timeout=60)
    saved = json.loads((tmp_path / "user" / "kubik" / hashes.CACHE_FILE_NAME).read_text())["files"]
    assert saved[str(checkpoint)]["file"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
