"""Errors of prompt analysis. All are ValueErrors, so callers that only know ValueError still work."""
from __future__ import annotations


class PromptError(ValueError):
    """A prompt (or an option about it) that cannot be analysed; the message says what to fix."""


class EmptyPromptError(PromptError):
    """The prompt holds no text once whitespace and control characters are removed."""


class UnknownDialectError(PromptError):
    """The dialect name is not one of DIALECTS."""


class WildcardError(PromptError):
    """A ``__wildcard__`` is missing, escapes the wildcards folder, or recurses too deep; or a
    dynamic prompt goes past its limits."""


class OllamaConfigError(PromptError):
    """The Ollama address, model name or timeout cannot be used (an address outside the hosts
    this machine allows included). ``field`` is "url", "model" or "timeout"."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
