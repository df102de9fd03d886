"""Where the pack's learning store lives, and opening it for the nodes and the rating routes.

The rule, in order:

1. ``$KUBIK_LEARNING_URL``: a file path or a SQLAlchemy URL (PostgreSQL, where several ComfyUI
   servers share one store);
2. inside ComfyUI, ``<ComfyUI user directory>/kubik/learning.sqlite3``;
3. elsewhere the command line's default (``store.default_store_location``).

Callers pass the pack's folder in ComfyUI's user directory (``<user dir>/kubik``), or None
outside ComfyUI; nothing here imports ComfyUI. Readers never create a store: no store yet means
no ratings yet.
"""
from __future__ import annotations

import os

from .adjust import learned_details
from .errors import LearningError
from .store import STORE_FILE_NAME, LearningStore, default_store_location, to_url


def store_location(kubik_dir: str | None) -> str:
    """$KUBIK_LEARNING_URL, else ``<kubik_dir>/learning.sqlite3``, else the command line's default."""
    location = os.environ.get("KUBIK_LEARNING_URL")
    if location:
        return location
    return os.path.join(kubik_dir, STORE_FILE_NAME) if kubik_dir else default_store_location()


def open_store(kubik_dir: str | None) -> LearningStore:
    """The store, created if it does not exist yet (for writing)."""
    return LearningStore(store_location(kubik_dir))


def existing_store(kubik_dir: str | None) -> LearningStore | None:
    """The store for reading, or None if no SQLite store file exists yet (none is created)."""
    location = store_location(kubik_dir)
    _url, path = to_url(location)
    if path is not None and not path.exists():
        return None
    return LearningStore(location)


def learned_values(kubik_dir: str | None, family: str, style: str = "") -> tuple[dict, str]:
    """(the optimizer's ``learned`` values, a note) from the store; nothing if there is no store.

    An unreadable store gives a note for the plan instead of stopping the generation.
    """
    try:
        store = existing_store(kubik_dir)
        if store is None:
            return {}, ""
        return (learned_details(store, family, style) or learned_details(store, family)), ""
    except LearningError as exc:
        return {}, f"learned values not used: {exc}"


def feedback_count(kubik_dir: str | None) -> int:
    """How many ratings the store holds (0 without a store, -1 if it cannot be read)."""
    try:
        store = existing_store(kubik_dir)
        return store.count("feedback") if store is not None else 0
    except LearningError:
        return -1


class RunGenerations:
    """The generations recorded while one prompt runs, by prompt id (only the latest is kept).

    Kubik Feedback refuses to rate them: their images were not on screen when the rating was set.
    """

    def __init__(self):
        self._prompt_id: str | None = None
        self._ids: set[str] = set()

    def remember(self, prompt_id: str | None, generation_ids: list[str]) -> None:
        if prompt_id is None:
            return
        if prompt_id != self._prompt_id:
            self._prompt_id, self._ids = prompt_id, set()
        self._ids.update(generation_ids)

    def made_in(self, prompt_id: str | None, generation_id: str) -> bool:
        return prompt_id is not None and prompt_id == self._prompt_id and generation_id in self._ids
