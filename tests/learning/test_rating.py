"""Rating an image by its generation id: one rating per image, replaced when rated again, read
back for the rating widget, and seen by the Preset Picker, the LoRA history and `kubik insights`.

Tests taking ``store`` or ``store_location`` run on SQLite and on a real PostgreSQL server
(kubik_testing.store_backends; the PostgreSQL cases skip without $KUBIK_TEST_POSTGRES_URL).
"""
from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

from kubik_core.cli import main
from kubik_core.learning import (GenerationRecord, LearningStore, UnknownGenerationError,
                                 choose_preset, lora_history_scores)
from kubik_testing.store_backends import store_location  # noqa: F401 (a fixture)


@pytest.fixture
def store(store_location):
    return LearningStore(store_location)


def _generation(store, **fields):
    fields = {"prompt": "a castle", "family": "sdxl", "style": "anime", "preset": "quality", **fields}
    return store.record_generation(GenerationRecord(**fields))


def test_rating_twice_replaces_the_rating(store):
    gen = _generation(store, loras=[{"name": "castle.safetensors"}])
    assert store.rating_of(gen) is None
    first = store.record_feedback(gen, 5, quality=4, tags="keeper, warm", comment="nice", saved=True)
    second = store.record_feedback(gen, 2, aesthetic=1, tags=["too dark"])
    assert first == second and store.count("feedback") == 1
    rating = store.rating_of(gen)
    rated_at = rating.pop("rated_at")
    assert isinstance(rated_at, float)
    # The whole rating is replaced: fields not given again are cleared, not kept.
    assert rating == {"rating": 2, "quality": None, "accuracy": None, "aesthetic": 1, "tags": ["too dark"],
                      "comment": "", "saved": False, "shared": False, "regenerated": False}
    assert store.preset_outcomes("sdxl", "anime") == {"quality": (0, 1)}
    assert store.lora_ratings() == {"castle.safetensors": (1, 0.25, 0)}


def test_the_rating_of_an_unknown_generation(store):
    for generation_id in ("0" * 32, "x" * 1000):
        with pytest.raises(UnknownGenerationError, match="is not in the learning store"):
            store.rating_of(generation_id)


def test_only_the_newest_row_of_an_image_counts(store):
    """A store written before re-rating replaced ratings may hold several rows of one image:
    the newest is its rating; the older ones count nowhere and the next rating replaces it."""
    gen = _generation(store)
    other = _generation(store, preset="speed")
    with store.engine.begin() as conn:
        for rating in (5, 5, 1):
            conn.execute(store.feedback.insert().values(generation_id=gen, rating=rating, created_at=1.0))
        conn.execute(store.feedback.insert().values(generation_id=other, rating=5, created_at=1.0))
    assert store.rating_of(gen)["rating"] == 1
    assert store.preset_outcomes("sdxl") == {"quality": (0, 1), "speed": (1, 0)}
    newest = max(r["id"] for r in store.rows("feedback") if r["generation_id"] == gen)
    assert store.record_feedback(gen, 4) == newest
    assert store.rating_of(gen)["rating"] == 4
    assert store.preset_outcomes("sdxl") == {"quality": (1, 0), "speed": (1, 0)}


def test_preset_choice_and_lora_history_follow_re_ratings(store):
    """A preset rated bad, then re-rated good, is chosen: the first rating no longer counts."""
    gens = [_generation(store, preset=preset, loras=[{"name": f"{preset}.safetensors"}])
            for preset in ("quality", "speed")]
    store.record_feedback(gens[0], 1)
    store.record_feedback(gens[1], 4)
    assert choose_preset(store, "sdxl", "anime", ["quality", "speed"], method="ucb1") == "speed"
    store.record_feedback(gens[0], 5)
    store.record_feedback(gens[1], 1)
    assert choose_preset(store, "sdxl", "anime", ["quality", "speed"], method="ucb1") == "quality"
    history = lora_history_scores(store)
    assert history["quality.safetensors"] > 0.5 > history["speed.safetensors"]


def test_insights_count_each_image_once(tmp_path, capsys):
    path = tmp_path / "learning.sqlite3"
    store = LearningStore(path)
    gen = _generation(store, loras=[{"name": "castle.safetensors"}])
    for rating in (2, 3, 5):
        store.record_feedback(gen, rating)
    assert main(["insights", "--store", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["feedback"] == 1
    assert data["families"]["sdxl"]["ratings"] == 1 and data["families"]["sdxl"]["mean_rating"] == 5
    assert data["best_loras_by_style"]["anime"][0]["mean_rating"] == 5


def _re_rate(location: str, generation_id: str, server: int, writers: int, times: int) -> None:
    """One "server" (a process with its own engine) whose threads rate one image over and over."""
    store = LearningStore(location)
    failures = []

    def write(writer: int) -> None:
        try:
            for i in range(times):
                store.record_feedback(generation_id, 1 + (server + writer + i) % 5,
                                      comment=f"{server}:{writer}:{i}")
        except BaseException as exc:  # reported through the exit code
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


@pytest.mark.timeout(240)
def test_raters_of_one_image_at_once_leave_one_rating(store_location):
    """Two servers with three threads each re-rate one image at once: it keeps one rating, the
    last one written (PostgreSQL locks the image's generation row; SQLite has one writer)."""
    gen = _generation(LearningStore(store_location))
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_re_rate, args=(store_location, gen, s, 3, 40)) for s in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=200)
    assert [p.exitcode for p in processes] == [0, 0]
    store = LearningStore(store_location)
    (row,) = store.rows("feedback")
    assert row["generation_id"] == gen and row["comment"].endswith(":39")
