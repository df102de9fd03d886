"""The JSON files of a model folder a user names (transformers' layout: config.json and the
processor's files), read as hostile input: a regular file, bounded size and JSON, an object,
and the sizes that decide how much memory the model takes checked before anything is built.

Each capability wraps ConfigFileError into its own error with its own prefix and fix.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .bounded_json import BoundedJSONError, loads
from .files import NotRegularFileError, read_regular


class ConfigFileError(ValueError):
    """A config file that is missing (``missing``), unreadable, not bounded JSON or not an object;
    the message names the file by its name only, never its folder."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def load_config_file(path: str | os.PathLike, max_bytes: int) -> dict:
    """The JSON object in ``path``; ConfigFileError saying what is wrong with it."""
    name = Path(path).name
    try:
        data = loads(read_regular(path, max_bytes), max_bytes=max_bytes)
    except FileNotFoundError:
        raise ConfigFileError(f"{name} is missing", missing=True) from None
    except (NotRegularFileError, OSError) as exc:
        raise ConfigFileError(f"cannot read {name} ({exc.strerror or exc})") from None
    except BoundedJSONError as exc:
        raise ConfigFileError(f"{name}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{name} must hold a JSON object")
    return data


def size_problem(config: dict, limits: dict[str, int], prefix: str = "") -> str | None:
    """The first of ``limits``' keys whose value in ``config`` is not a whole number from 1 to
    its limit, said as "<prefix><key> = <value> is not a whole number from 1 to <limit>"."""
    for key, limit in limits.items():
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            return f"{prefix}{key} = {str(value)[:40]} is not a whole number from 1 to {limit}"
    return None


@contextmanager
def quiet_transformers():
    """transformers at error level and without progress bars while a model folder loads: its own
    report of missing keys would be a second, multi-line message beside the caller's one line
    (see loaded_but_missing). The level is restored afterwards."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


def loaded_but_missing(info: dict) -> list[str]:
    """The weights a ``from_pretrained(..., output_loading_info=True)`` left at their random
    start (missing or of another shape): any means the file belongs to another model."""
    return sorted(info.get("missing_keys") or []) + sorted(info.get("mismatched_keys") or [])
