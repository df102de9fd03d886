"""Errors raised by kubik_core.hub, one class per thing a user can act on.

Messages name the resource and what would fix it. They never contain a token: every message
built from a server response goes through :func:`redact` with the tokens configured.
"""
from __future__ import annotations


class HubError(Exception):
    """Base class: a hub request or download failed."""


class HubAuthError(HubError):
    """401/403: the resource needs a token, or the token lacks access."""


class HubNotFound(HubError):
    """404: no such model, version, file or hash on the hub."""


class HubRateLimited(HubError):
    """429 that persisted through every retry, or a Retry-After longer than we will wait."""


class HubUnavailable(HubError):
    """5xx, timeouts or dropped connections that persisted through every retry."""


class HashMismatch(HubError):
    """The downloaded bytes do not have the SHA-256 the hub (or the caller) announced."""


class UnsafeFilename(HubError):
    """A file name from a hub or URL could not be made into a safe plain name."""


class FileConflict(HubError):
    """The target name already holds a different file; nothing is overwritten."""


class SourceError(HubError, ValueError):
    """A download source string we cannot understand."""


def redact(text: str, secrets) -> str:
    """Replace every non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
