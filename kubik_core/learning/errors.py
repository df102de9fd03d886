"""Errors of the learning store. Each message names the store and what fixes the problem."""
from __future__ import annotations


class LearningError(Exception):
    """Base class: a user-facing problem with the learning store or its inputs."""


class StoreCorruptError(LearningError):
    """The store file exists but is not a readable database. It is left untouched."""


class StoreReadOnlyError(LearningError):
    """Nothing can be written to the store (read-only file, folder, server or database user);
    reading it still works."""


class UnknownGenerationError(LearningError):
    """Feedback names a generation the store has never recorded."""
