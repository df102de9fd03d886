"""The learning store: writes, reads, bad input, corruption, concurrency, learned values.

Tests taking ``store`` or ``store_location`` run on SQLite and on a real PostgreSQL server
(kubik_testing.store_backends; the PostgreSQL cases skip without $KUBIK_TEST_POSTGRES_URL).
"""
from __future__ import annotations

import multiprocessing
import random

import pytest
from sqlalchemy import event

from kubik_core.learning import (GenerationRecord, LearningError, LearningStore, StoreCorruptError,
                                 UnknownGenerationError, choose_preset, learned_adjustments,
                                 lora_history_scores)
from kubik_core.learning.scores import (bayesian_average, thompson_choice, ucb1_choice,
                                        wilson_lower_bound)
from kubik_testing.store_backends import (drop_connection, first_use, server_writes,
                                          store_location)  # noqa: F401 (a fixture)


@pytest.fixture
def store(store_location):
    return LearningStore(store_location)


def _generation(store, loras=(), **fields):
    fields.setdefault("family", "sdxl")
    return store.record_generation(GenerationRecord(prompt="a castle", loras=list(loras), **fields))


def test_sqlite_store_uses_wal(tmp_path):
    store = LearningStore(tmp_path / "learning.sqlite3")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_generation_feedback_round_trip(store):
    gen = _generation(store, loras=[{"name": "a.safetensors", "strength_model": 0.8, "suggested": True}],
                      style="anime", seed=42, params={"steps": 25})
    store.record_feedback(gen, 5, quality=4, accuracy=None, aesthetic=5, tags=["keeper", " "], comment="nice",
                          saved=True)
    row = store.rows("feedback")[0]
    assert (row["rating"], row["quality"], row["accuracy"], row["aesthetic"], row["saved"]) == (5, 4, None, 5, True)
    assert row["tags"] == '["keeper"]'
    assert store.rows("generations")[0]["seed"] == "42"
    _generation(store, seed=2**64 - 1)           # ComfyUI's largest seed fits
    assert "18446744073709551615" in {row["seed"] for row in store.rows("generations")}
    assert store.lora_ratings() == {"a.safetensors": (1, 1.0, 1)}


@pytest.mark.parametrize("kwargs, message", [
    ({"rating": 0}, "from 1 to 5, got 0"),
    ({"rating": None}, "rating is required"),
    ({"rating": 6}, "whole number from 1 to 5"),
    ({"rating": 3.5}, "whole number from 1 to 5"),
    ({"rating": float("nan")}, "whole number from 1 to 5"),
    ({"rating": 4, "quality": 9}, "quality must be"),
    ({"rating": True}, "whole number"),
])
def test_bad_ratings_are_refused_and_nothing_is_written(store, kwargs, message):
    gen = _generation(store)
    with pytest.raises(LearningError, match=message):
        store.record_feedback(gen, **kwargs)
    assert store.count("feedback") == 0


def test_feedback_for_an_unknown_generation(store):
    with pytest.raises(UnknownGenerationError, match="not in the learning store"):
        store.record_feedback("deadbeef", 4)


def test_lora_without_a_name_rolls_back_the_generation(store):
    with pytest.raises(LearningError, match="needs a name"):
        _generation(store, loras=[{"strength_model": 1.0}])
    assert store.count("generations") == 0


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\x00" * 200])
def test_corrupt_store_is_reported_and_left_untouched(tmp_path, content):
    path = tmp_path / "broken.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreCorruptError, match="left untouched"):
        LearningStore(path)
    assert path.read_bytes() == content


def _processes(target, args_list):
    """Run ``target`` in one new process per argument tuple (each opens its own engine)."""
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=target, args=args) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    return [process.exitcode for process in processes]


@pytest.mark.slow  # ~10 s per back end on 2 shared cores: 8,000 separate write transactions
@pytest.mark.timeout(300)
def test_two_servers_with_four_writers_each_lose_no_rating(store_location):
    LearningStore(store_location)   # the schema exists, as a running server would have made it
    assert _processes(server_writes, [(store_location, s, 4, 1000) for s in range(2)]) == [0, 0]
    store = LearningStore(store_location)
    comments = {row["comment"] for row in store.rows("feedback", limit=20_000)}
    assert store.count("feedback") == 8000 and len(comments) == 8000
    assert comments == {f"{s}:{w}:{i}" for s in range(2) for w in range(4) for i in range(1000)}


@pytest.mark.timeout(120)
def test_servers_starting_together_on_a_new_store_create_its_schema_once(store_location):
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    processes = [ctx.Process(target=first_use, args=(store_location, start, s)) for s in range(4)]
    for process in processes:
        process.start()
    start.set()          # all four open the store that does not exist yet at the same moment
    for process in processes:
        process.join(timeout=100)
    assert [p.exitcode for p in processes] == [0] * 4
    store = LearningStore(store_location)
    assert sorted(r["prompt"] for r in store.rows("generations")) == [f"server {s}" for s in range(4)]


def _drop_before(store, statement: str, times: int) -> list[int]:
    """Drop the store's connection just before it sends ``statement``, ``times`` times."""
    dropped = [0]

    @event.listens_for(store.engine, "before_cursor_execute")
    def _drop(conn, _cursor, sql, _params, _context, _executemany):
        if sql.lstrip().upper().startswith(statement) and dropped[0] < times:
            dropped[0] += 1
            drop_connection(conn)

    return dropped


def test_a_connection_dropped_mid_transaction_is_retried_on_a_new_one(store):
    dropped = _drop_before(store, "INSERT INTO GENERATION_LORAS", times=1)
    gen = _generation(store, loras=[{"name": "a.safetensors"}, {"name": "b.safetensors"}])
    assert dropped == [1]
    assert [r["id"] for r in store.rows("generations")] == [gen]     # once, not twice
    assert sorted(r["lora"] for r in store.rows("generation_loras")) == ["a.safetensors", "b.safetensors"]


def test_a_connection_that_keeps_dropping_is_reported_and_nothing_is_half_written(store):
    before = _generation(store)
    dropped = _drop_before(store, "INSERT INTO GENERATION_LORAS", times=10)
    with pytest.raises(LearningError, match=r"^the connection to the learning store .* was lost 3 times, "
                       r"so nothing was recorded \(unfinished work is rolled back: nothing was "
                       r"half-written\)\. Check the server and the network, then try again\.$"):
        _generation(store, loras=[{"name": "a.safetensors"}])
    assert dropped == [3]
    assert [r["id"] for r in store.rows("generations")] == [before]   # the generation row rolled back
    assert store.count("generation_loras") == 0


def test_a_connection_dropped_while_committing_is_reported_not_repeated(store):
    gen = _generation(store)
    dropped = [0]

    @event.listens_for(store.engine, "commit")
    def _drop(conn):
        if not dropped[0]:
            dropped[0] += 1
            drop_connection(conn)

    with pytest.raises(LearningError, match=r"was lost while committing, so the record may or may not "
                       r"have been saved: check with `kubik insights` before recording it again$"):
        store.record_feedback(gen, 4)
    assert dropped == [1] and store.count("feedback") in (0, 1)   # all of it or nothing, never run twice


def test_scores():
    assert wilson_lower_bound(0, 0) == 0.0
    assert wilson_lower_bound(1, 1) < wilson_lower_bound(90, 100) < 0.9
    assert round(wilson_lower_bound(90, 100), 3) == 0.826
    assert bayesian_average(0.0, 0, 0.5) == 0.5
    assert ucb1_choice(["a", "b"], {"a": (3, 0)}) == "b"
    assert ucb1_choice(["a", "b"], {"a": (9, 1), "b": (1, 9)}) == "a"
    rng = random.Random(0)
    picks = [thompson_choice(["good", "bad"], {"good": (30, 3), "bad": (3, 30)}, rng) for _ in range(200)]
    assert picks.count("good") > 190


def test_history_scores_follow_ratings(store):
    for rating, name in ((5, "liked"), (5, "liked"), (1, "disliked")):
        store.record_feedback(_generation(store, loras=[{"name": name}]), rating)
    scores = lora_history_scores(store)
    assert scores["liked"] > 0.5 > scores["disliked"]


def test_a_value_moves_only_after_three_consistent_edits(store):
    edit = lambda final, field="cfg", suggested=7.0: store.record_edits("sdxl", "anime", {field: suggested}, {field: final})
    edit(5.0)
    edit(5.5)
    assert learned_adjustments(store, "sdxl") == {}
    edit(6.0)
    assert learned_adjustments(store, "sdxl") == {"cfg": 5.5}
    edit(8.0)                                   # the other way: the run is broken
    assert learned_adjustments(store, "sdxl") == {}
    for _ in range(3):
        edit("euler", "sampler_name", "dpmpp_2m")
        edit(30, "steps", 25)
    assert learned_adjustments(store, "sdxl") == {"sampler_name": "euler", "steps": 30}
    assert learned_adjustments(store, "sdxl", style="photographic") == {}
    assert learned_adjustments(store, "sd15") == {}


def test_learned_values_feed_the_optimizer(store):
    from kubik_core.params import optimize

    for final in (5.0, 5.0, 5.0):
        store.record_edits("sdxl", "", {"cfg": 7.0}, {"cfg": final})
    plan = optimize(None, "sdxl", learned=learned_adjustments(store, "sdxl"))
    assert plan.cfg == 5.0
    assert any(d.field == "cfg" and "learned" in d.reason for d in plan.decisions)


def test_thompson_preset_choice_prefers_the_rated_one(store):
    for _ in range(15):
        store.record_feedback(_generation(store, style="anime", preset="quality"), 5)
        store.record_feedback(_generation(store, style="anime", preset="speed"), 1)
    assert store.preset_outcomes("sdxl", "anime") == {"quality": (15, 0), "speed": (0, 15)}
    rng = random.Random(1)
    picks = [choose_preset(store, "sdxl", "anime", ["quality", "speed"], rng=rng) for _ in range(50)]
    assert picks.count("quality") >= 48
    assert choose_preset(store, "sdxl", "anime", ["quality", "speed", "new"], method="ucb1") == "new"
