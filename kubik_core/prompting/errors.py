"""Errors of prompt analysis. All are ValueErrors, so callers that only know ValueError still work."""
from __future__ import annotations


class PromptError(ValueError):
    """A prompt (or an option about it) that cannot be analysed; the message says what to fix."""


class EmptyPromptError(PromptError):
    """The prompt holds no text once whitespace and control characters are removed."""


class UnknownDialectError(PromptError):
    """The dialect name is not one of DIALECTS."""


class WildcardError(PromptError):
    """A ``__wildcard__`` is missing, escapes the wildcards folder, or recurses too deep."""
