"""Errors of the LoRA library. Each message names the file and what is wrong with it."""
from __future__ import annotations


class LoraError(Exception):
    """Base class for LoRA library errors."""


class LoraStackError(LoraError, ValueError):
    """A LoRA stack given as data (JSON, a dict) that cannot be used; the message names the
    input and the item at fault."""
