"""Learned adjustments through the pack's nodes: quick test runs do not become AUTO for every
prompt, and what they taught is visible in `kubik insights` and can be forgotten.

Issue 16: after three ASSISTED runs at 2 steps and 64x64, AUTO gave 2 steps and 64x64 for every
SD1.5 prompt. Everything here runs on a real SQLite store in a temporary folder, through the
pack's nodes (as ComfyUI calls them) and the `kubik` command line.
"""
from __future__ import annotations

import importlib
import json
import time

import pytest
import torch

from kubik_core.cli import main
from kubik_core.learning import LearningStore, learned_adjustments
from kubik_core.params import FAMILIES, optimize
from kubik_core.params.bounds import min_steps
from kubik_core.prompting import analyze_prompt

SD15_PROMPTS = ("portrait of an old fisherman, 85mm photo", "a misty mountain landscape at dawn",
                "anime girl with cherry blossoms, detailed illustration", "a red sports car on a coastal road")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    monkeypatch.setenv("KUBIK_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


def _optimizer(run_node, analysis, mode="AUTO", family="sd15", aspect_ratio="auto", **overrides):
    inputs = dict(family=family, priority="balanced", aspect_ratio=aspect_ratio, mode=mode,
                  device="h100_80gb", steps=0, cfg=0.0, sampler_name="auto", scheduler="auto",
                  width=0, height=0, guidance=0.0, analysis=analysis)
    return run_node("KubikParameterOptimizer", **{**inputs, **overrides})[0]


def _quick_test_run(pack, run_node, prompt):
    """What the issue's user did: an ASSISTED run at 2 steps and 64x64, saved by Kubik Save Image."""
    analysis = importlib.import_module(f"{pack.__name__}.kubik_core.prompting").analyze_prompt(prompt)
    plan = _optimizer(run_node, analysis, mode="ASSISTED", steps=2, width=64, height=64)
    assert (plan.steps, plan.width, plan.height) == (2, 64, 64)      # an override wins in ASSISTED
    run_node("KubikSaveImage", images=torch.rand(1, 64, 64, 3), filename_prefix="kubik/quick", record=True,
             analysis=analysis, plan=plan, positive=prompt, negative="", seed=1, model_name="v1-5.safetensors")


def test_three_quick_test_runs_do_not_become_auto_for_every_prompt(pack, run_node, env):
    prompting = importlib.import_module(f"{pack.__name__}.kubik_core.prompting")
    for _ in range(3):
        _quick_test_run(pack, run_node, "a cat")
    assert len(LearningStore(env / "learning.sqlite3").rows("edits")) == 9      # steps, width, height x3
    sd15 = FAMILIES["sd15"]
    for prompt in SD15_PROMPTS:
        analysis = prompting.analyze_prompt(prompt)
        plan = _optimizer(run_node, analysis)
        floor, _why = min_steps(sd15, plan.sampler_name)
        assert plan.steps >= floor >= 15, prompt
        unlearned = optimize(analyze_prompt(prompt), "sd15")
        assert (plan.width, plan.height) == (unlearned.width, unlearned.height), prompt   # the prompt's framing
        assert (plan.width, plan.height) in sd15.buckets, prompt
        steps = next(d for d in plan.decisions if d.field == "steps")
        assert steps.reason.startswith(f"without learning {unlearned.steps}; learned from your 3 edits "
                                       "(you chose 2, at least 15, the published minimum of dpmpp_2m: "), steps.reason
        width = next(d for d in plan.decisions if d.field == "width")
        assert "learned from your 3 edits (you chose 64x64, 208x208 after the per-edit limit; " in width.reason
        assert not any("skipped" in note for note in plan.notes)
        assert any("kubik insights --reset sd15" in note for note in plan.notes)


def test_insights_lists_learned_values_and_reset_forgets_one_family(pack, run_node, env, capsys):
    for _ in range(3):
        _quick_test_run(pack, run_node, "a cat")
    store = LearningStore(env / "learning.sqlite3")
    for _ in range(3):
        store.record_edits("sdxl", "anime", {"cfg": 7.0}, {"cfg": 6.0})
    gen = store.rows("generations")[0]["id"]
    store.record_feedback(gen, 4)
    location = str(env / "learning.sqlite3")

    assert main(["insights", "--store", location, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sd15 = data["families"]["sd15"]
    assert sd15["learned"] == {"height": 512, "steps": 15, "width": 512}
    steps = next(item for item in sd15["learned_details"] if item["field"] == "steps")
    assert (steps["value"], steps["wanted"], steps["edits"]) == (15, 2, 3)
    assert steps["last_edit"][:4] == time.strftime("%Y") and "at least 15" in steps["reason"]
    assert data["families"]["sdxl"]["learned"] == {"cfg": 6.0}

    assert main(["insights", "--store", location]) == 0
    text = capsys.readouterr().out
    assert "  learned steps = 15 from 3 edits, last " in text
    assert "(forget these: kubik insights --reset sd15)" in text

    before = {table: store.count(table) for table in ("generations", "feedback", "generation_loras")}
    assert main(["insights", "--store", location, "--reset", "sd15"]) == 0
    assert "removed 9 edits" in capsys.readouterr().out
    assert {table: store.count(table) for table in before} == before      # nothing else is lost
    assert learned_adjustments(store, "sd15") == {} and learned_adjustments(store, "sdxl") == {"cfg": 6.0}
    analysis = importlib.import_module(f"{pack.__name__}.kubik_core.prompting").analyze_prompt("a cat")
    assert _optimizer(run_node, analysis).steps == optimize(analyze_prompt("a cat"), "sd15").steps

    assert main(["insights", "--store", location, "--reset", "sd15"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"kubik insights: error: --reset: no edits for family 'sd15' in {store.describe()}; "
                           "families with learned values or edits: sdxl")
    assert main(["insights", "--store", location, "--reset", "sdxl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"reset": "sdxl", "edits_removed": 3}
