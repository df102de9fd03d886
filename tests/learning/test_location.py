"""Where the pack's learning store lives (kubik_core.learning.location), on real SQLite files."""
from __future__ import annotations

import pytest

from kubik_core.learning import GenerationRecord, LearningStore
from kubik_core.learning.location import (RunGenerations, existing_store, feedback_count,
                                          learned_values, open_store, store_location)


@pytest.fixture
def no_url(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBIK_LEARNING_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_the_url_from_the_environment_wins_over_the_comfyui_folder(monkeypatch, tmp_path):
    url = "postgresql+psycopg://kubik:secret@db.example:5432/kubik"
    monkeypatch.setenv("KUBIK_LEARNING_URL", url)
    assert store_location(str(tmp_path / "kubik")) == url      # passed on untouched
    assert store_location(None) == url


def test_inside_comfyui_the_store_is_in_the_user_folder_else_the_command_line_default(no_url, tmp_path):
    assert store_location(str(tmp_path / "user" / "kubik")) == str(tmp_path / "user" / "kubik" /
                                                                   "learning.sqlite3")
    assert store_location(None) == str(tmp_path / "xdg" / "kubik" / "learning.sqlite3")


def test_readers_create_nothing_and_the_writer_creates_the_store(no_url, tmp_path):
    folder = tmp_path / "kubik"
    folder.mkdir()
    assert existing_store(str(folder)) is None
    assert feedback_count(str(folder)) == 0
    assert learned_values(str(folder), "sdxl") == ({}, "")
    assert list(folder.iterdir()) == []                        # reading made no file

    store = open_store(str(folder))
    assert (folder / "learning.sqlite3").is_file()
    generation = store.record_generation(GenerationRecord(prompt="a castle", family="sdxl"))
    store.record_feedback(generation, rating=4)
    assert feedback_count(str(folder)) == 1
    assert isinstance(existing_store(str(folder)), LearningStore)


def test_a_damaged_store_is_a_note_for_the_plan_and_a_count_of_minus_one(no_url, tmp_path):
    folder = tmp_path / "kubik"
    folder.mkdir()
    (folder / "learning.sqlite3").write_bytes(b"this is not a SQLite database" * 10)
    assert feedback_count(str(folder)) == -1
    learned, note = learned_values(str(folder), "sdxl", "photo")
    assert learned == {} and note.startswith("learned values not used: ")
    assert (folder / "learning.sqlite3").read_bytes() == b"this is not a SQLite database" * 10


def test_generations_of_the_running_prompt_only_are_remembered():
    runs = RunGenerations()
    runs.remember(None, ["a"])                   # outside ComfyUI's server: nothing to remember
    assert not runs.made_in(None, "a")
    runs.remember("prompt-1", ["a", "b"])
    assert runs.made_in("prompt-1", "a") and runs.made_in("prompt-1", "b")
    assert not runs.made_in("prompt-2", "a")
    runs.remember("prompt-2", ["c"])             # a new prompt forgets the old one
    assert runs.made_in("prompt-2", "c") and not runs.made_in("prompt-1", "a")
