"""The character registry: one JSON file of character presets, shared by the nodes and `kubik characters`.

Where it lives, in order:

1. ``$KUBIK_CHARACTERS_FILE`` (one registry for the command line and every ComfyUI);
2. inside ComfyUI, ``<ComfyUI user directory>/kubik/characters.json`` (beside the learning store);
3. elsewhere ``$XDG_DATA_HOME/kubik/characters.json`` (default ``~/.local/share/kubik/``), the
   folder of the command line's learning store.

The file is ``{"version": 1, "characters": [<Character.to_dict()>, ...]}``. It is read with the
bounded JSON reader and every character is checked (model.py). A file that cannot be read or
checked is never written over: the change is refused with one line naming the file and what is
wrong, so a hand edit with a typo loses nothing. Writes are atomic (temporary file + rename) and
serialised with a lock file, so a ComfyUI reading it while `kubik characters add` writes sees the
old registry or the new one, and two writers never lose each other's change.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..common.atomic import write_text_atomic
from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads
from ..common.files import NotRegularFileError, read_regular
from .examples import example
from .model import Character, CharacterError, check_name

REGISTRY_FILE_NAME = "characters.json"
FORMAT_VERSION = 1
MAX_REGISTRY_BYTES = 4 * 1024 * 1024
MAX_CHARACTERS = 1000


class RegistryError(ValueError):
    """The registry file cannot be read, checked or written; the message names it and the fix."""


def registry_path(kubik_dir: str | os.PathLike | None = None) -> Path:
    """$KUBIK_CHARACTERS_FILE, else ``<kubik_dir>/characters.json`` (ComfyUI's user folder),
    else the command line's default (see the module docstring)."""
    named = os.environ.get("KUBIK_CHARACTERS_FILE")
    if named:
        return Path(named).expanduser()
    if kubik_dir:
        return Path(kubik_dir) / REGISTRY_FILE_NAME
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "kubik" / REGISTRY_FILE_NAME


@dataclass
class Registry:
    """The characters of one registry file, in the file's order."""

    path: Path
    characters: list[Character] = field(default_factory=list)

    def names(self) -> list[str]:
        return [c.name for c in self.characters]

    def find(self, name: str) -> Character | None:
        """The character called ``name`` (names are compared without case)."""
        folded = name.casefold() if isinstance(name, str) else None
        return next((c for c in self.characters if c.name.casefold() == folded), None)

    def get(self, name: str) -> Character:
        character = self.find(name)
        if character is None:
            known = ", ".join(self.names()[:20]) or "none yet"
            raise RegistryError(f"no character named {str(name)[:64]!r} (known: {known}); "
                                "`kubik characters list` shows them, `kubik characters add` makes one")
        return character

    def character(self, name: str) -> tuple[Character, bool]:
        """The character called ``name`` in this registry, else the example of that name, with
        whether it is an example (examples are read-only); RegistryError when neither exists."""
        found = self.find(name)
        if found is not None:
            return found, False
        shipped = example(name)
        if shipped is not None:
            return shipped, True
        return self.get(name), False

    def to_json(self) -> str:
        import json

        data = {"version": FORMAT_VERSION, "characters": [c.to_dict() for c in self.characters]}
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def load_registry(path: str | os.PathLike, shown_as: str | None = None) -> Registry:
    """The registry in ``path`` (an empty one when the file does not exist yet).

    ``shown_as`` is how errors name the file (the nodes pass a name relative to ComfyUI's user
    folder, so that an error shown over HTTP never reveals a server path). Raises RegistryError.
    """
    path = Path(path)
    label = shown_as or str(path)
    try:
        raw = read_regular(path, MAX_REGISTRY_BYTES)
    except FileNotFoundError:
        return Registry(path)
    except NotRegularFileError:
        raise RegistryError(f"{label} is not a regular file; replace it with the registry's JSON file") from None
    except OSError as exc:
        raise RegistryError(f"{label} cannot be read ({exc.strerror or type(exc).__name__}); "
                            "check its permissions") from None
    if len(raw) > MAX_REGISTRY_BYTES:
        raise RegistryError(f"{label} is larger than {MAX_REGISTRY_BYTES // 2**20} MiB, too large for a "
                            "character registry; nothing was changed")
    if not raw.strip():
        return Registry(path)
    try:
        data = bounded_loads(raw, max_depth=8, max_bytes=MAX_REGISTRY_BYTES)
    except BoundedJSONError as exc:
        raise RegistryError(f"{label}: {exc}; fix the file or move it away (nothing was changed)") from None
    try:
        return Registry(path, _characters(data))
    except CharacterError as exc:
        raise RegistryError(f"{label}: {exc}; fix the file or move it away (nothing was changed)") from None


def _characters(data) -> list[Character]:
    if not isinstance(data, dict):
        raise CharacterError(f"expected an object with 'characters', found {type(data).__name__}")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CharacterError(f"registry version {str(version)[:20]!r} is not {FORMAT_VERSION} (written by "
                             "another version of KubikAI?)")
    unknown = sorted(repr(str(k)[:40]) for k in data if k not in ("version", "characters"))
    if unknown:
        raise CharacterError(f"unknown field(s) {', '.join(unknown)}; a registry has version and characters")
    raw = data.get("characters", [])
    if not isinstance(raw, list):
        raise CharacterError(f"characters should be a list, found {type(raw).__name__}")
    if len(raw) > MAX_CHARACTERS:
        raise CharacterError(f"{len(raw)} characters (a registry holds at most {MAX_CHARACTERS})")
    characters, seen = [], set()
    for n, item in enumerate(raw, 1):
        try:
            character = Character.from_dict(item)
        except CharacterError as exc:
            raise CharacterError(f"character {n}: {exc}") from None
        if character.name.casefold() in seen:
            raise CharacterError(f"character {n}: the name {character.name!r} is used twice")
        seen.add(character.name.casefold())
        characters.append(character)
    return characters


@contextmanager
def editing(path: str | os.PathLike, shown_as: str | None = None) -> Iterator[Registry]:
    """Read the registry, let the block change it, and write it back atomically.

    Writers are serialised by an exclusive lock on ``<file>.lock`` (where the platform has
    ``fcntl``). If the file cannot be read or checked the block never runs and the file is left
    as it is; if the block raises, nothing is written.
    """
    path = Path(path)
    label = shown_as or str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a+b")
    except OSError as exc:
        raise RegistryError(f"cannot write the registry {label} ({exc.strerror or type(exc).__name__}); "
                            "check the folder's permissions or set KUBIK_CHARACTERS_FILE") from None
    with lock:
        _lock(lock)
        registry = load_registry(path, shown_as)
        yield registry
        if len(registry.characters) > MAX_CHARACTERS:
            raise RegistryError(f"a registry holds at most {MAX_CHARACTERS} characters; remove some first")
        try:
            write_text_atomic(path, registry.to_json())
        except OSError as exc:
            raise RegistryError(f"cannot write the registry {label} ({exc.strerror or type(exc).__name__}); "
                                "nothing was changed") from None


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: atomic writes still keep the file whole
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def put(registry: Registry, character: Character, replace: bool = False) -> None:
    """Add ``character``, or with ``replace`` put it in the place of the one with its name."""
    check_name(character.name)
    if example(character.name) is not None:
        raise RegistryError(f"{character.name!r} is the name of a character that ships with KubikAI; "
                            "choose another name")
    existing = registry.find(character.name)
    if existing is not None and not replace:
        raise RegistryError(f"a character named {existing.name!r} exists already; choose another name, "
                            "or change it with `kubik characters set`")
    if existing is None:
        registry.characters.append(character)
    else:
        registry.characters[registry.characters.index(existing)] = character


def record_threshold(path: str | os.PathLike, name: str, threshold: float | None,
                     shown_as: str | None = None) -> Character:
    """Store a character's consistency threshold (what `kubik consistency --save-threshold`
    calibrated), through editing(): a registry that cannot be read is left as it is."""
    from .model import check_threshold

    try:
        value = check_threshold(threshold)
    except CharacterError as exc:
        raise RegistryError(str(exc)) from None
    with editing(path, shown_as) as registry:
        character = registry.get(name)
        character.threshold = value
    return character
