"""Errors of the learning store."""
from __future__ import annotations


class LearningError(Exception):
    """Base class: a user-facing problem with the learning store or its inputs."""


class StoreCorruptError(LearningError):
    """The store file exists but is not a readable database. It is left untouched."""


class UnknownGenerationError(LearningError):
    """Feedback names a generation the store has never recorded."""
