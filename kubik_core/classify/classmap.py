"""The class map: one ordered list of class names, saved with every split, checkpoint and model.

A classifier's output index means nothing without the exact map it was trained with. Building
maps separately for train and validation (for instance from folder listings, where one missing
class shifts every later index) produces chance-level validation accuracy that looks like
overfitting. So the map is built once, written next to the split, embedded in every checkpoint
and exported model, and compared by fingerprint wherever two of them meet.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..common import bounded_json
from ..common.atomic import write_text_atomic

MAX_FILE_BYTES = 16 * 1024 * 1024  # a classes.json of 100,000 long names is ~20 times smaller


class ClassMapMismatch(ValueError):
    """Two class maps that must be identical (split vs checkpoint, model vs eval data) differ."""


@dataclass(frozen=True)
class ClassMap:
    names: tuple[str, ...]

    def __post_init__(self):
        if not self.names:
            raise ValueError("a class map needs at least one class")
        for name in self.names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"class names must be non-empty strings, got {str(name)[:60]!r}")
            if any(unicodedata.category(ch) == "Cc" for ch in name):
                raise ValueError(f"class name {name[:60]!r} contains control characters (a line "
                                 "break or tab in a label or folder name); rename it")
        if len(set(self.names)) != len(self.names):
            dupes = sorted(n for n, count in Counter(self.names).items() if count > 1)
            raise ValueError(f"class map has duplicate class names: {dupes[:5]}")

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "ClassMap":
        """Sorted unique labels: the same data always gives the same map."""
        return cls(tuple(sorted(set(labels))))

    def __len__(self) -> int:
        return len(self.names)

    def index(self, label: str) -> int:
        try:
            return self._lookup[label]
        except KeyError:
            raise KeyError(f"label {label!r} is not in the class map ({len(self)} classes)") from None

    @property
    def _lookup(self) -> dict[str, int]:
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {name: i for i, name in enumerate(self.names)}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the ordered names: equal fingerprints mean identical index meaning."""
        return hashlib.sha256("\n".join(self.names).encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return {"classes": list(self.names), "sha256": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict) -> "ClassMap":
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise ValueError("a class map must be a JSON object with a 'classes' list")
        cmap = cls(tuple(data["classes"]))
        expected = data.get("sha256")
        if expected and expected != cmap.fingerprint:
            raise ValueError("class map file is damaged: its sha256 does not match its classes")
        return cmap

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClassMap":
        path = Path(path)
        try:
            if path.exists() and not path.is_dir() and not path.is_file():
                raise ValueError(f"class map {path} is not a regular file (a device, pipe or socket)")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"class map {path} is too large ({path.stat().st_size} bytes, "
                                 f"limit {MAX_FILE_BYTES})")
            data = bounded_json.loads(path.read_bytes(), max_depth=4)
        except FileNotFoundError:
            raise FileNotFoundError(f"class map not found: {path}") from None
        except IsADirectoryError:
            raise ValueError(f"class map {path} is a folder, not a classes.json file") from None
        except bounded_json.BoundedJSONError as exc:
            raise ValueError(f"class map {path}: {exc}") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"class map {path}: {exc}") from None

    def require_same(self, other: "ClassMap", what: str) -> None:
        """Raise ClassMapMismatch naming the first differences, so the user can see the cause."""
        if self.names == other.names:
            return
        mine, theirs = set(self.names), set(other.names)
        details = []
        if theirs - mine:
            details.append(f"{len(theirs - mine)} classes only in {what} (e.g. {sorted(theirs - mine)[:3]})")
        if mine - theirs:
            details.append(f"{len(mine - theirs)} classes missing from {what} (e.g. {sorted(mine - theirs)[:3]})")
        if not details:
            first = next(i for i, (a, b) in enumerate(zip(self.names, other.names)) if a != b)
            details.append(f"same classes in another order (index {first}: {self.names[first]!r} "
                           f"vs {other.names[first]!r})")
        raise ClassMapMismatch(f"class map of {what} does not match ({len(self)} vs {len(other)} "
                               f"classes): " + "; ".join(details))


def require_labels_known(cmap: ClassMap, labels: Sequence[str], what: str) -> None:
    unknown = sorted(set(labels) - set(cmap.names))
    if unknown:
        raise ClassMapMismatch(f"{what} has {len(unknown)} labels that are not in the class map "
                               f"(e.g. {unknown[:3]}): was it split with another class map?")
