"""Learned adjustments stay within bounds and AUTO and MANUAL treat them as documented.

Issue 16: after three ASSISTED runs at 2 steps and 64x64, AUTO gave 2 steps and 64x64 for every
SD1.5 prompt. Everything here runs on a real SQLite store in a temporary folder, through the
optimizer and the `kubik` command line; the same runs through the pack's nodes are in
tests/nodes/test_learned_bounds_nodes.py.
"""
from __future__ import annotations

import time

import pytest

from kubik_core.cli import main
from kubik_core.learning import LearningStore, learned_adjustments, learned_details
from kubik_core.params import FAMILIES, optimize
from kubik_core.params.bounds import MAX_CHANGE_PER_LESSON
from kubik_core.prompting import analyze_prompt


@pytest.fixture
def store(tmp_path):
    return LearningStore(tmp_path / "learning.sqlite3")


def test_learning_moves_a_bounded_step_per_edit(store):
    """Each edit moves a value at most a fifth of the suggestion; the family's range caps it."""
    before_the_edits = time.time()
    for _ in range(3):
        store.record_edits("sd15", "", {"steps": 25}, {"steps": 200})
    (item,) = learned_details(store, "sd15").values()
    assert (item.value, item.wanted, item.edits) == (25 + 3 * 5, 200, 3)
    assert before_the_edits <= item.last_edit <= time.time()          # the time of the last edit
    plan = optimize(None, "sd15", learned=learned_details(store, "sd15"), device="h100_80gb")
    assert plan.steps == 40
    for _ in range(3):
        store.record_edits("sd15", "", {"steps": 25}, {"steps": 200})
    assert learned_adjustments(store, "sd15")["steps"] == 25 + 6 * 5
    plan = optimize(None, "sd15", learned=learned_details(store, "sd15"), device="h100_80gb")
    assert plan.steps == FAMILIES["sd15"].steps_range[1]          # 55 wanted by the lessons; 50 is the top
    assert "at most 50, the top of the published range" in next(
        d.reason for d in plan.decisions if d.field == "steps")
    assert MAX_CHANGE_PER_LESSON == 0.2


@pytest.mark.parametrize("family,sampler,floor", [
    ("sd15", "dpmpp_2m", 15),         # DPM-Solver++: 15 steps, above SD1.5's range start of 12
    ("sd15", "ddim", 20),             # DDIM: 20
    ("sd15", "euler", 12),            # no published sampler minimum: the family's own (12)
    ("sdxl", "uni_pc", 20),           # UniPC's 10 is below SDXL's range start of 20
    ("pony", "euler_ancestral", 20),
    ("sdxl_lightning", "euler", 2),   # step-distilled families keep their small minimum
    ("sdxl_turbo", "dpmpp_2m", 1),
    ("sdxl_lcm", "lcm", 4),
    ("flux_schnell", "euler", 1),
])
def test_minimum_steps_per_family_and_sampler(store, family, sampler, floor):
    for _ in range(3):
        store.record_edits(family, "", {"sampler_name": "x", "steps": 2}, {"sampler_name": sampler, "steps": 1})
    plan = optimize(None, family, learned=learned_details(store, family), device="h100_80gb")
    assert (plan.sampler_name, plan.steps) == (sampler, floor)


def test_cfg_guidance_and_clip_skip_stay_in_the_published_range(store):
    for _ in range(3):
        store.record_edits("sdxl_turbo", "", {"cfg": 1.0}, {"cfg": 9.0})
        store.record_edits("flux_dev", "", {"guidance": 3.5, "cfg": 1.0}, {"guidance": 30.0, "cfg": 4.0})
        store.record_edits("pony", "", {"clip_skip": -2, "cfg": 7.0}, {"clip_skip": -12, "cfg": 1.5})
    turbo = optimize(None, "sdxl_turbo", learned=learned_details(store, "sdxl_turbo"), device="h100_80gb")
    assert turbo.cfg == 1.0                                              # distilled: CFG stays 1
    flux = optimize(None, "flux_dev", learned=learned_details(store, "flux_dev"), device="h100_80gb")
    assert (flux.cfg, flux.guidance) == (1.0, 5.0)                      # 3.5 + 1.5 at most
    pony = optimize(None, "pony", learned=learned_details(store, "pony"), device="h100_80gb")
    assert (pony.clip_skip, pony.cfg) == (-2, 6.0)                       # CFG range 6-8


def test_a_learned_size_picks_the_pixel_count_never_the_framing(store):
    """Someone who renders SD1.5 at 768x768 gets 768x768 for square pictures, while a portrait
    or a 16:9 aspect ratio keeps its frame: sizes stay native buckets of the chosen framing."""
    for _ in range(3):
        store.record_edits("sd15", "", {"width": 512, "height": 512}, {"width": 768, "height": 768})
    learned = learned_details(store, "sd15")
    square = optimize(None, "sd15", learned=learned, device="h100_80gb")
    assert (square.width, square.height) == (768, 768)
    portrait = optimize(analyze_prompt("portrait of an old fisherman"), "sd15", learned=learned, device="h100_80gb")
    assert portrait.width < portrait.height and (portrait.width, portrait.height) in FAMILIES["sd15"].buckets
    wide = optimize(None, "sd15", aspect_ratio="16:9", learned=learned, device="h100_80gb")
    assert (wide.width, wide.height) == (896, 512)          # SD1.5's only bucket near 16:9
    odd = optimize(None, "sd15", learned={"width": 1001, "height": 77}, device="h100_80gb")
    assert (odd.width, odd.height) in FAMILIES["sd15"].buckets and odd.width == odd.height
    assert not any("skipped" in note for note in odd.notes)


def test_auto_ignores_overrides_and_manual_ignores_learning(store):
    for _ in range(3):
        store.record_edits("sd15", "", {"steps": 25}, {"steps": 30})
    learned = learned_details(store, "sd15")
    auto = optimize(None, "sd15", mode="AUTO", overrides={"steps": 2}, learned=learned, device="h100_80gb")
    assert auto.steps == 30 and auto.overrides == {}
    assert any("AUTO mode ignores the override inputs (steps)" in n for n in auto.notes)
    manual = optimize(None, "sd15", mode="MANUAL", learned=learned, device="h100_80gb")
    assert manual.steps == FAMILIES["sd15"].steps["balanced"]


def test_reset_help_is_documented(capsys):
    with pytest.raises(SystemExit):
        main(["insights", "--help"])
    assert "--reset FAMILY" in capsys.readouterr().out
