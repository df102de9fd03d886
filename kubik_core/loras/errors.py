"""Errors of the LoRA library. Each message names the file and what is wrong with it."""
from __future__ import annotations


class LoraError(Exception):
    """Base class for LoRA library errors."""


class LoraFileError(LoraError):
    """A LoRA file that cannot be read (truncated, bad header, not safetensors...)."""


class LibraryCacheError(LoraError):
    """The scan cache cannot be used (unreadable or from an incompatible version)."""
