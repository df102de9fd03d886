"""Kubik Save Image hands each image's generation id to the editor, and Kubik Feedback rates by
generation id, never an image made in the same run (issue 16: "rating records against the
wrong image").

Inside ComfyUI the prompt worker sets ``PromptServer.instance.last_prompt_id`` before each
prompt; here a stand-in server module carries it, as comfy_bridge reads it from sys.modules.
"""
from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from kubik_core.learning import LearningStore


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    monkeypatch.setenv("KUBIK_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


@pytest.fixture
def prompt_worker(monkeypatch):
    """ComfyUI's server as the nodes see it: ``start(prompt_id)`` begins running a prompt."""
    instance = types.SimpleNamespace()
    module = types.ModuleType("server")
    module.PromptServer = type("PromptServer", (), {"instance": instance})
    monkeypatch.setitem(sys.modules, "server", module)
    return types.SimpleNamespace(start=lambda prompt_id: setattr(instance, "last_prompt_id", prompt_id))


def _save(run_node, batch=2):
    return run_node("KubikSaveImage", images=torch.rand(batch, 16, 16, 3), filename_prefix="kubik/rate",
                    record=True)


def _rate(run_node, generation_id, rating=4, **extra):
    inputs = dict(generation_id=generation_id, rating=rating, quality=0, accuracy=0, aesthetic=0, tags="",
                  comment="", saved=False, shared=False, regenerated=False)
    return run_node("KubikFeedback", **{**inputs, **extra})["result"][0]


def test_save_image_gives_the_editor_one_generation_id_per_image(run_node, env):
    result = _save(run_node, batch=3)
    ids = result["ui"]["kubik_generation_ids"]
    assert len(ids) == 3 and len(set(ids)) == 3 and result["result"] == (ids[0],)
    store = LearningStore(env / "learning.sqlite3")
    paths = {row["id"]: row["image_path"] for row in store.rows("generations")}
    assert [paths[i].rsplit("/", 1)[1] for i in ids] == [f["filename"] for f in result["ui"]["images"]]
    off = run_node("KubikSaveImage", images=torch.rand(1, 8, 8, 3), filename_prefix="kubik/rate", record=False)
    assert off["ui"]["kubik_generation_ids"] == [] and off["result"] == ("",)


def test_feedback_never_rates_the_image_its_own_run_made(run_node, env, prompt_worker):
    """The issue's case: a seed on "randomize" makes the re-run a new image; the rating set for
    the image on screen must not go to it."""
    prompt_worker.start("prompt-1")
    seen = _save(run_node)["result"][0]                   # run 1: the image the user looks at
    assert _rate(run_node, seen, rating=0).startswith("not rated yet")
    prompt_worker.start("prompt-2")                       # run 2, after setting rating 4:
    new = _save(run_node)["result"][0]                    # the seed changed, a new image
    summary = _rate(run_node, new)
    assert summary.startswith(f"not recorded: generation {new[:8]} is a new image made by this run")
    store = LearningStore(env / "learning.sqlite3")
    assert store.count("feedback") == 0
    prompt_worker.start("prompt-3")                       # run 3, seeds fixed: Save Image is cached,
    assert _rate(run_node, new) == f"recorded 4/5 for generation {new[:8]}"   # so its id is not new
    assert store.rating_of(new)["rating"] == 4 and store.rating_of(seen) is None


def test_feedback_rates_by_id_alone_as_an_api_prompt_does(run_node, env, prompt_worker):
    prompt_worker.start("generate")
    ids = _save(run_node)["ui"]["kubik_generation_ids"]
    prompt_worker.start("rate")                           # a prompt holding only Kubik Feedback
    assert _rate(run_node, f" {ids[1]} ", rating=5, tags="keeper") == f"recorded 5/5 for generation {ids[1][:8]}"
    assert _rate(run_node, ids[1], rating=2) == f"recorded 2/5 for generation {ids[1][:8]}"   # re-rated
    store = LearningStore(env / "learning.sqlite3")
    (row,) = store.rows("feedback")
    assert (row["generation_id"], row["rating"], row["tags"]) == (ids[1], 2, "[]")
    with pytest.raises(ValueError, match="^generation_id: generation '0{32}' is not in the learning store"):
        _rate(run_node, "0" * 32)


def test_feedback_runs_on_every_queue(node_classes):
    """Always re-run, so a rating refused for a new image is recorded once that image is cached."""
    changed = node_classes["KubikFeedback"].IS_CHANGED(rating=4)
    assert math.isnan(changed) and changed != changed
