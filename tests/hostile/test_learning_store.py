"""Hostile corpus of the learning store: broken, locked, read-only, full and unreachable stores,
and hostile values. Each case asserts the store's own one-line error (naming the store and the
fix) or the bounded value, that nothing already saved is lost, and that a read-only store can
still be read by insights, the recommender's history and the Preset Picker.

Cases taking ``store`` run on SQLite and on PostgreSQL (kubik_testing.store_backends).
"""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

import kubik_core.learning.database as database
from kubik_core.cli import main
from kubik_core.learning import (GenerationRecord, LearningError, LearningStore, ParameterEdits,
                                 StoreCorruptError, StoreReadOnlyError, UnknownGenerationError,
                                 choose_preset, learned_adjustments, lora_history_scores)
from kubik_core.learning.insights import insights
from kubik_testing.store_backends import (POSTGRES_ENV, file_permissions_apply, postgres_schema,
                                          postgres_url, store_location)  # noqa: F401 (a fixture)


@pytest.fixture
def store(store_location):
    return LearningStore(store_location)


def _filled(location) -> tuple[LearningStore, str]:
    """A store holding one rated generation with a LoRA, and three consistent edits."""
    store = LearningStore(location)
    gen = store.record_generation(GenerationRecord(prompt="a castle", family="sdxl", style="anime",
                                                   preset="quality", loras=[{"name": "castle.safetensors"}]))
    store.record_feedback(gen, 5, comment="kept")
    for final in (5.0, 5.0, 5.0):
        store.record_edits("sdxl", "anime", {"cfg": 7.0}, {"cfg": final})
    return store, gen


def _snapshot(store: LearningStore) -> dict:
    return {table: sorted(json.dumps(row, sort_keys=True, default=str) for row in store.rows(table))
            for table in database.TABLE_NAMES}


def _assert_still_readable(store: LearningStore, gen: str) -> None:
    """What a read-only store must still give: insights, LoRA history, learned values, presets."""
    data = insights(store)
    assert (data["generations"], data["feedback"], data["edits"]) == (1, 1, 3)
    assert lora_history_scores(store)["castle.safetensors"] > 0.5
    assert learned_adjustments(store, "sdxl") == {"cfg": 5.0}
    assert choose_preset(store, "sdxl", "anime", ["quality", "speed"], method="ucb1") == "speed"
    assert store.preset_outcomes("sdxl", "anime") == {"quality": (1, 0)}
    assert [r["id"] for r in store.rows("generations")] == [gen]


# ---------------------------------------------------------------- read-only SQLite stores
def test_a_read_only_folder_refuses_writes_clearly_and_still_reads(tmp_path):
    folder = tmp_path / "store"
    path = folder / "learning.sqlite3"
    written, gen = _filled(path)
    written.engine.dispose()          # the server that wrote it stopped (its -wal and -shm files go)
    folder.chmod(0o555)
    try:
        with file_permissions_apply():
            store = LearningStore(path)        # opens (reads) though SQLite cannot make its -shm file
            _assert_still_readable(store, gen)
            with pytest.raises(StoreReadOnlyError) as caught:
                store.record_feedback(gen, 3)
            assert str(caught.value) == (
                f"learning store {path}: its folder {folder} is read-only, so nothing can be "
                "recorded (reading still works). To record, make the folder writable, or point "
                "KUBIK_LEARNING_URL at a store in a writable place.")
            with pytest.raises(StoreReadOnlyError, match=r"learning store .*new\.sqlite3 cannot be "
                               r"created: its folder .* is read-only\. Make the folder writable"):
                LearningStore(folder / "new.sqlite3")
    finally:
        folder.chmod(0o755)
    assert LearningStore(path).count("feedback") == 1          # nothing lost, and writable again
    LearningStore(path).record_feedback(gen, 3)


def test_a_read_only_file_refuses_writes_clearly_and_still_reads(tmp_path):
    path = tmp_path / "learning.sqlite3"
    written, gen = _filled(path)
    written.engine.dispose()          # the server that wrote it stopped
    path.chmod(0o444)
    with file_permissions_apply():
        store = LearningStore(path)
        _assert_still_readable(store, gen)
        with pytest.raises(StoreReadOnlyError) as caught:
            store.record_generation(GenerationRecord(prompt="another"))
    assert str(caught.value) == (
        f"learning store {path}: the file is read-only, so nothing can be recorded (reading still "
        "works). To record, make it writable, or point KUBIK_LEARNING_URL at a store in a writable place.")
    path.chmod(0o644)
    assert LearningStore(path).count("generations") == 1


def test_a_read_only_folder_with_unmerged_changes_is_named_not_misread(tmp_path):
    folder = tmp_path / "store"
    path = folder / "learning.sqlite3"
    _filled(path)                                   # its open connections keep the -wal file
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("learning.sqlite3", "learning.sqlite3-wal"):   # a snapshot, made read-only
        (copy / name).write_bytes((folder / name).read_bytes())
    assert (copy / "learning.sqlite3-wal").stat().st_size > 0
    copy.chmod(0o555)
    try:
        with file_permissions_apply(), pytest.raises(StoreReadOnlyError) as caught:
            LearningStore(copy / "learning.sqlite3")
    finally:
        copy.chmod(0o755)
    assert str(caught.value) == (
        f"learning store {copy / 'learning.sqlite3'}: its folder is read-only and learning.sqlite3-wal "
        "holds changes not merged into the store yet, so it cannot be read safely. Make the folder "
        "writable once (the next use of the store merges them).")


# ---------------------------------------------------------------- locked, full, damaged
def test_a_locked_store_says_so_while_reads_go_on(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 300)   # not a minute, in a test
    path = tmp_path / "learning.sqlite3"
    store, gen = _filled(path)
    other = sqlite3.connect(path, isolation_level=None)      # another program holding the write lock
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LearningError) as caught:
            store.record_feedback(gen, 2)
        assert store.count("feedback") == 1                   # WAL: readers are not blocked
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(caught.value) == (
        f"learning store {path} is locked: another program has held its write lock for over 0.3 s "
        "(a database browser with unsaved changes, or a stuck process), so nothing was recorded. "
        "Close that program and try again.")
    store.record_feedback(gen, 2)                             # re-rating replaces the rating of 5
    assert [row["rating"] for row in store.rows("feedback")] == [2]


def test_a_full_disk_is_named_and_nothing_is_half_written(tmp_path):
    path = tmp_path / "learning.sqlite3"
    store, gen = _filled(path)
    before = _snapshot(store)

    # SQLite's own SQLITE_FULL, as on a full disk: the file may not grow by one more page.
    @event.listens_for(store.engine, "connect")
    def _no_more_pages(dbapi_connection, _record):
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    store.engine.dispose()
    big = [{"name": f"lora_{i}.safetensors"} for i in range(200)]
    with pytest.raises(LearningError) as caught:
        store.record_generation(GenerationRecord(prompt="x" * 90_000, loras=big))
    assert str(caught.value) == (f"learning store {path}: the disk is full, so nothing was recorded. "
                                 "Free some space on it and try again.")
    event.remove(store.engine, "connect", _no_more_pages)
    store.engine.dispose()
    assert _snapshot(store) == before


def test_a_store_overwritten_while_in_use_is_reported_and_left_untouched(tmp_path, capsys):
    path = tmp_path / "learning.sqlite3"
    store, gen = _filled(path)
    garbage = b"not a database any more " * 400
    with open(path, "r+b") as handle:             # in place, while the store's connections are open
        handle.write(garbage)
    for action in (lambda: store.record_feedback(gen, 1), lambda: store.count("feedback")):
        with pytest.raises(StoreCorruptError) as caught:
            action()
        assert str(caught.value) == (
            f"learning store {path} is not a SQLite database (damaged or overwritten). It was left "
            "untouched: move it aside (with its -wal and -shm files) to start a new store, or "
            "restore it from a backup.")
    assert path.read_bytes()[:len(garbage)] == garbage
    assert (tmp_path / "learning.sqlite3-wal").exists()     # what it held is still there
    assert main(["insights", "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a SQLite database (damaged or overwritten)" in err


def test_a_store_replaced_while_in_use_is_written_in_its_new_file(tmp_path):
    path = tmp_path / "learning.sqlite3"
    store, gen = _filled(path)
    restored = tmp_path / "backup.sqlite3"
    backup, backup_gen = _filled(restored)
    backup.engine.dispose()                       # a complete backup: its -wal merged into the file
    os.replace(restored, path)                    # e.g. a backup restored by the user
    store.record_feedback(backup_gen, 4)          # into the file now at the path, not the old one
    assert [(r["generation_id"], r["rating"]) for r in LearningStore(path).rows("feedback")] == [(backup_gen, 4)]
    with pytest.raises(UnknownGenerationError):
        store.record_feedback(gen, 4)


def test_a_damaged_page_is_reported_as_damage(tmp_path):
    path = tmp_path / "learning.sqlite3"
    store, _gen = _filled(path)
    for i in range(300):                          # enough rows for several pages
        store.record_generation(GenerationRecord(prompt=f"prompt {i} " * 20))
    store.engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // page_size):   # every page but the header's: scrambled
        data[page * page_size:page * page_size + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError) as caught:        # mid-run: the store was open
        store.rows("generations")
    assert str(caught.value) == (
        f"learning store {path} is damaged (database disk image is malformed). It was left untouched: "
        "move it aside (with its -wal and -shm files) to start a new store, or restore it from a backup.")
    with pytest.raises(StoreCorruptError, match=rf"^learning store {re.escape(str(path))} "):
        LearningStore(path)                                  # opened anew: checked first
    assert path.read_bytes() == bytes(data)


def test_a_folder_in_place_of_the_store_file(tmp_path, capsys):
    (tmp_path / "learning.sqlite3").mkdir()
    assert main(["insights", "--store", str(tmp_path / "learning.sqlite3")]) == 2
    assert capsys.readouterr().err == (
        f"kubik insights: error: learning store {tmp_path / 'learning.sqlite3'} is a folder, not a database file: "
        f"give the path of a file, e.g. {tmp_path / 'learning.sqlite3' / 'learning.sqlite3'}\n")


# ---------------------------------------------------------------- servers: unreachable, read-only
# A bare postgresql:// URL uses the PostgreSQL driver that is installed (psycopg 3 here), not
# SQLAlchemy's default psycopg2, which the requirements do not name.
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql"])
def test_an_unreachable_server_is_one_line_without_the_password(capsys, scheme):
    import socket

    with socket.socket() as s:                    # a local port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"{scheme}://kubik:s3cret@127.0.0.1:{port}/kubik"
    with pytest.raises(LearningError) as caught:
        LearningStore(url)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to the learning store {scheme}://kubik:***@"
                              f"127.0.0.1:{port}/kubik: connection failed: ")
    assert message.endswith("Check that the server runs and that KUBIK_LEARNING_URL is right.")
    assert "s3cret" not in message and "\n" not in message
    assert main(["insights", "--store", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect to the learning store" in err and "s3cret" not in err


@pytest.mark.parametrize("url, message", [
    ("nosuchdb+nodriver://host/db", "the learning store location nosuchdb+nodriver://host/db is not a "
     "file path or a SQLAlchemy URL (dialect+driver://user:password@host/database): Can't load "
     "plugin: sqlalchemy.dialects:nosuchdb.nodriver"),
    ("mysql+nosuchmodule://u:pw@host/db", "the learning store location mysql+nosuchmodule://u:***@host/db "
     "is not a file path or a SQLAlchemy URL (dialect+driver://user:password@host/database): Can't "
     "load plugin: sqlalchemy.dialects:mysql.nosuchmodule"),
])
def test_a_url_that_names_no_usable_database(url, message):
    with pytest.raises(LearningError) as caught:
        LearningStore(url)
    assert str(caught.value) == message


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason="needs the PostgreSQL test server")
def test_a_read_only_postgresql_store_refuses_writes_clearly_and_still_reads():
    with postgres_schema() as schema:
        _store, gen = _filled(postgres_url(schema))
        # The same store through a read-only session, as on a standby server.
        read_only_url = postgres_url(schema, default_transaction_read_only="on")
        store = LearningStore(read_only_url)
        _assert_still_readable(store, gen)
        with pytest.raises(StoreReadOnlyError) as caught:
            store.record_feedback(gen, 2)
        assert str(caught.value) == (
            f"learning store {store.describe()} is read-only (a read-only server or transaction), so "
            "nothing can be recorded; reading still works. Point KUBIK_LEARNING_URL at the primary server.")
        assert LearningStore(postgres_url(schema)).count("feedback") == 1


# ---------------------------------------------------------------- hostile values
def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


@pytest.mark.parametrize("kwargs, message", [
    ({"rating": 6}, "rating must be a whole number from 1 to 5, got 6"),
    ({"rating": -1}, "rating must be a whole number from 1 to 5, got -1"),
    ({"rating": 10 ** 5000}, "rating must be a whole number from 1 to 5, got an integer of 16610 bits"),
    ({"rating": math.nan}, "rating must be a whole number from 1 to 5, got nan"),
    ({"rating": math.inf}, "rating must be a whole number from 1 to 5, got inf"),
    ({"rating": "5"}, "rating must be a whole number from 1 to 5, got '5'"),
    ({"rating": 4, "quality": _nested(5000)}, "quality must be a whole number from 1 to 5, got a dict"),
    ({"rating": 4, "accuracy": [[[[5]]]]}, "accuracy must be a whole number from 1 to 5, got a list"),
    ({"rating": 4, "aesthetic": "[" * 10_000}, "aesthetic must be a whole number from 1 to 5, got text of "
     "10,000 characters"),
    ({"rating": 4, "comment": "x" * 10_001}, "comment has 10,001 characters; the learning store keeps at "
     "most 10,000: shorten it"),
    ({"rating": 4, "comment": _nested(3)}, "comment must be text, got a dict"),
    ({"rating": 4, "tags": ",".join(f"t{i}" for i in range(51))}, "51 tags given; the learning store keeps "
     "at most 50"),
    ({"rating": 4, "tags": "ok, " + "y" * 65}, "tag 'yyyyyyyyyyyyyyyyyyyy'... has 65 characters (at most 64): "
     "shorten it"),
    ({"rating": 4, "tags": [_nested(2000)]}, "tags must be texts, got a dict"),
    ({"rating": 4, "tags": 7}, "tags must be comma-separated text or a list of texts, got 7"),
])
def test_hostile_feedback_is_refused_and_nothing_is_written(store, kwargs, message):
    gen = store.record_generation(GenerationRecord(prompt="a castle"))
    with pytest.raises(LearningError) as caught:
        store.record_feedback(gen, **kwargs)
    assert str(caught.value) == message
    assert store.count("feedback") == 0


@pytest.mark.parametrize("generation_id, error, message", [
    ("g" * 1_000_000, UnknownGenerationError, "generation text of 1,000,000 characters is not in the "
     "learning store"),
    (["a", "b"], LearningError, "generation_id must be text, got a list"),
    (_nested(3000), LearningError, "generation_id must be text, got a dict"),
])
def test_hostile_generation_ids(store, generation_id, error, message):
    with pytest.raises(error) as caught:
        store.record_feedback(generation_id, 4)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("fields, message", [
    ({"style": "s" * 65}, "style has 65 characters; the learning store keeps at most 64: shorten it"),
    ({"family": 12}, "family must be text, got 12"),
    ({"prompt": "p" * 100_001}, "prompt has 100,001 characters; the learning store keeps at most 100,000: "
     "shorten it"),
    ({"seed": 2 ** 64}, "seed must be a whole number from -9223372036854775808 to 18446744073709551615, "
     "got 18446744073709551616"),
    ({"seed": 1.5}, "seed must be a whole number from -9223372036854775808 to 18446744073709551615, got 1.5"),
    ({"seed": True}, "seed must be a whole number from -9223372036854775808 to 18446744073709551615, "
     "got True"),
    ({"analysis": _nested(40)}, "analysis is nested more than 32 levels deep"),
    ({"params": _nested(100_000)}, "params is nested more than 32 levels deep"),
    ({"analysis": {"text": "z" * 1_000_001}}, "analysis takes 1,000,013 characters as JSON; the learning "
     "store keeps at most 1,000,000"),
    ({"loras": [{"name": "a", "strength_model": math.nan}]}, "LoRA 'a' strength_model must be a finite "
     "number from -100 to 100, got nan"),
    ({"loras": [{"name": "a", "strength_clip": 1e300}]}, "LoRA 'a' strength_clip must be a finite number "
     "from -100 to 100, got 1e+300"),
    ({"loras": [{"name": "n" * 256}]}, "LoRA 1 name has 256 characters; the learning store keeps at most "
     "255: shorten it"),
    ({"loras": ["a.safetensors"]}, "LoRA 1 of the generation must be a mapping, got 'a.safetensors'"),
    ({"loras": [{"name": "a"}] * 257}, "the LoRAs of a generation must be a list of at most 256, got a list"),
])
def test_hostile_generations_are_refused_and_nothing_is_written(store, fields, message):
    with pytest.raises(LearningError) as caught:
        store.record_generation(GenerationRecord(**{"prompt": "a castle", **fields}))
    assert str(caught.value) == message
    assert store.count("generations") == 0 and store.count("generation_loras") == 0


def test_non_finite_numbers_in_an_analysis_are_stored_as_null(store):
    store.record_generation(GenerationRecord(prompt="x", analysis={"weights": [math.nan, math.inf, 1.5]},
                                             params={"cfg": -math.inf, "seed": 2 ** 70}))
    row = store.rows("generations")[0]
    assert json.loads(row["analysis"]) == {"weights": [None, None, 1.5]}
    assert json.loads(row["params"]) == {"cfg": None, "seed": None}


def test_a_batch_with_one_bad_edit_records_nothing(store):
    records = [GenerationRecord(prompt=f"image {i}") for i in range(3)]
    with pytest.raises(LearningError) as caught:
        store.record_generations(records, ParameterEdits("sdxl", "", {"cfg": 7.0}, {"cfg": math.nan}))
    assert str(caught.value) == "the final value of cfg is nan, not a finite number"
    assert store.count("generations") == 0 and store.count("edits") == 0
    ids = store.record_generations(records, ParameterEdits("sdxl", "", {"cfg": 7.0, "steps": 30},
                                                           {"cfg": 5.0, "steps": 30}))
    assert store.count("generations") == 3
    assert [(e["generation_id"], e["field"]) for e in store.rows("edits")] == [(ids[0], "cfg")]


def test_edits_written_by_another_program_are_skipped_not_fatal(store):
    for final in (5.0, 5.0, 5.0):
        store.record_edits("sdxl", "", {"cfg": 7.0}, {"cfg": final})
    with store.engine.begin() as conn:          # rows no Kubik store writes: deep, huge, not JSON
        for text in ("[" * 5000 + "]" * 5000, "1e999", "NaN", "{not json"):
            conn.execute(store.edits.insert().values(family="sdxl", style="", field="cfg", suggested="7.0",
                                                     final=text, created_at=0.0))
    assert learned_adjustments(store, "sdxl") == {"cfg": 5.0}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20)


@settings(derandomize=True, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rating=_json_values, quality=_json_values, tags=_json_values, comment=_json_values)
def test_fuzzed_feedback_is_stored_in_bounds_or_refused_clearly(tmp_path, rating, quality, tags, comment):
    store = LearningStore(tmp_path / "fuzz.sqlite3")
    gen = store.record_generation(GenerationRecord(prompt="fuzz"))
    before = store.count("feedback")
    try:
        feedback_id = store.record_feedback(gen, rating, quality=quality, tags=tags, comment=comment)
    except LearningError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        assert store.count("feedback") == before
        return
    (row,) = [r for r in store.rows("feedback", limit=1_000_000) if r["id"] == feedback_id]
    assert 1 <= row["rating"] <= 5 and (row["quality"] is None or 1 <= row["quality"] <= 5)
    assert len(json.loads(row["tags"])) <= 50 and len(row["comment"]) <= 10_000
