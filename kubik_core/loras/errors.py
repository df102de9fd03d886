"""Errors of the LoRA library. Each message names the file and what is wrong with it."""
from __future__ import annotations


class LoraError(Exception):
    """Base class for LoRA library errors."""


class LoraFileError(LoraError):
    """A LoRA file that cannot be read (truncated, bad header, not safetensors...).

    ``file`` is the name the caller gave (a path, or a name relative to a model folder) and
    ``reason`` the problem alone, so that a scan can record it against the file without
    repeating the path.
    """

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class LoraStackError(LoraError, ValueError):
    """A LoRA stack given as data (JSON, a dict) that cannot be used; the message names the
    input and the item at fault."""
