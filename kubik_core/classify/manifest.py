"""Datasets as manifests: rows of (image path or URL, label, optional group).

Three sources are read the same way:

- a folder tree ``root/<label>/<image>`` (subfolders inside a class folder stay in that class);
- a CSV with a header: ``path`` (or ``url``/``image``), ``label``, optional ``group``;
- JSONL, one object per line with the same keys.

Relative paths in CSV/JSONL are resolved against the manifest's folder, so a split directory can
be moved as a whole. ``group`` (an observation id, a photographer, a near-duplicate hash) keeps
related images on the same side of a split; rows without one form their own group.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..common import bounded_json
from ..common.atomic import write_text_atomic

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_PATH_KEYS = ("path", "url", "image", "file", "filepath")
_LABEL_KEYS = ("label", "class", "species", "category")
MAX_LINE_BYTES = 1024 * 1024  # one JSONL row: a path, a label, a group


@dataclass(frozen=True)
class Sample:
    path: str           # absolute local path, or an http(s) URL
    label: str
    group: str = ""     # empty: the sample is its own group

    @property
    def is_url(self) -> bool:
        return self.path.startswith(("http://", "https://"))

    @property
    def group_key(self) -> str:
        return self.group or f"\0{self.path}"


def read_dataset(source: str | os.PathLike) -> list[Sample]:
    """Read a folder tree, a .csv or a .jsonl manifest into samples (stable order)."""
    source = Path(source)
    if source.is_dir():
        samples = read_folder(source)
    elif not source.exists():
        raise FileNotFoundError(f"dataset not found: {source}")
    elif not source.is_file():
        raise ValueError(f"dataset {source}: not a regular file (a device, pipe or socket)")
    elif source.suffix.lower() == ".csv":
        samples = read_csv(source)
    elif source.suffix.lower() in (".jsonl", ".ndjson"):
        samples = read_jsonl(source)
    else:
        raise ValueError(f"dataset {source}: expected a folder, a .csv or a .jsonl manifest")
    if not samples:
        raise ValueError(f"dataset {source} contains no images")
    return samples


def read_folder(root: Path) -> list[Sample]:
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(Sample(str(file.resolve()), class_dir.name))
    return samples


def _pick(row: dict, keys: tuple[str, ...], what: str, where: str) -> str:
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"{where}: the {what} in column {key!r} must be text, got "
                                 f"{type(value).__name__}")
            return str(value).strip()
    raise ValueError(f"{where}: no {what} (expected one of the columns {', '.join(keys)})")


def _resolve(path: str, base: Path) -> str:
    if path.startswith(("http://", "https://")):
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (base / candidate).resolve())


def _row_to_sample(row: dict, base: Path, where: str) -> Sample:
    path = _pick(row, _PATH_KEYS, "image path or URL", where)
    label = _pick(row, _LABEL_KEYS, "label", where)
    group = row.get("group")
    return Sample(_resolve(path, base), label, "" if group in (None, "") else str(group))


def read_csv(path: Path) -> list[Sample]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise ValueError(f"{path}: empty CSV (expected a header with path,label[,group])")
            return [_row_to_sample({k.strip().lower(): v for k, v in row.items() if isinstance(k, str) and k},
                                   path.parent, f"{path} line {reader.line_num}")
                    for row in reader]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    except csv.Error as exc:  # a field over csv's size limit, a NUL byte ...
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None


def read_jsonl(path: Path) -> list[Sample]:
    samples = []
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = bounded_json.loads(line, max_depth=8, max_bytes=MAX_LINE_BYTES)
            except bounded_json.BoundedJSONError as exc:
                raise ValueError(f"{path} line {lineno}: {exc}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {lineno}: expected a JSON object")
            samples.append(_row_to_sample({str(k).lower(): v for k, v in row.items()}, path.parent,
                                          f"{path} line {lineno}"))
    return samples


def write_jsonl(path: str | os.PathLike, samples: Iterable[Sample]) -> Path:
    """Write a manifest atomically; local paths are stored relative to its folder when inside it."""
    path = Path(path)
    base = path.parent.resolve()
    lines = []
    for s in samples:
        row = asdict(s)
        if not s.is_url:
            try:
                row["path"] = os.path.relpath(s.path, base)
            except ValueError:  # another drive on Windows
                pass
        if not row["group"]:
            del row["group"]
        lines.append(json.dumps(row, ensure_ascii=False))
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    return path
