"""Read the files people keep next to their LoRAs, whatever tool wrote them.

For ``<stem>.safetensors`` in one folder:

* ``<stem>.civitai.info``: CivitAI's model-version JSON as Civitai Helper and kubik_core.hub save
  it (``baseModel``, ``trainedWords``, ``stats``, ``description``, ``nsfwLevel``, and
  ``model{name, type, nsfw, poi}``; ``model.tags``/``model.description`` where a tool merged
  the model's own answer in).
* ``<stem>.metadata.json``: ComfyUI-Lora-Manager's schema (``model_name``, ``base_model``,
  ``sha256``, ``tags``, ``modelDescription``, ``notes``, ``civitai`` = a version object whose
  ``model`` has tags and description, ``usage_tips`` = a JSON string ``{strength_min,
  strength_max, strength, clip_strength, clip_skip}``).
* ``<stem>.json``: A1111's user metadata (``description``, ``sd version``, ``activation text``,
  ``preferred weight`` where 0 means unset, ``negative text``, ``notes``).
* ``<stem>.txt``: free notes; ``<stem>.preview.png`` / ``<stem>.png`` (or jpg/jpeg/webp): preview.

Sidecars are hand-edited and written by many tools, and a downloaded one is written by a
stranger: a value of the wrong type or out of range is skipped with a problem recorded, a file
nested too deep, holding non-finite numbers, too large or not UTF-8 is recorded as a problem of
that sidecar (kubik_core.common.bounded_json), never an exception, and never a reason to drop
the LoRA. Lists and texts are capped so that one file cannot bloat the index or the search. A
sidecar that is a link is read only where it leads next to the model (its listed folder or the
folder of the model's real file), so a link to a file elsewhere on the server is never read.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads
from ..common.files import read_regular
from .stack import MAX_STRENGTH

SIDECAR_SUFFIXES = (".civitai.info", ".metadata.json", ".json", ".txt", ".sha256")
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpeg", ".preview.jpg", ".preview.webp",
                    ".png", ".jpeg", ".jpg", ".webp")
MAX_SIDECAR_BYTES = 8 * 1024 * 1024
# CivitAI nsfwLevel bit flags: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX, 32 blocked.
NSFW_LEVEL_R = 4
# Caps on what one sidecar contributes (real ones: a few dozen tags and trigger words of a few
# words each, titles of one line, descriptions of a few KB).
MAX_ITEMS = 200
MAX_WORD_CHARS = 200
MAX_TITLE_CHARS = 300
MAX_PROMPT_CHARS = 2_000      # activation / negative text: searched and split into trigger words
MAX_TEXT_CHARS = 20_000       # description and notes: kept for the user, not searched
MAX_SUMMARY_CHARS = 2_000     # the model's description: its opening says what kind of LoRA it is
MAX_COUNT = 10**12            # downloads and votes
MAX_ID = 2**63 - 1
MAX_CLIP_SKIP = 24


@dataclass
class SidecarInfo:
    """What the sidecars of one LoRA say, merged (CivitAI first, then LM, then A1111)."""

    title: str = ""
    model_name: str = ""          # the model's own name (CivitAI model.name, Lora-Manager model_name)
    civitai_base: str = ""
    a1111_version: str = ""
    trained_words: list[str] = field(default_factory=list)
    activation_text: str = ""
    negative_text: str = ""
    tags: list[str] = field(default_factory=list)
    description: str = ""
    model_description: str = ""   # opening of CivitAI model.description / LM modelDescription
    notes: str = ""
    nsfw: bool = False
    poi: bool = False             # CivitAI's "person of interest": a real person's likeness
    nsfw_level: int = 0
    downloads: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    usage_tips: dict[str, float] = field(default_factory=dict)
    preferred_weight: float = 0.0
    sha256: str = ""              # as a sidecar claims it (trusted only if newer than the file)
    civitai_version_id: int = 0
    preview: str = ""
    files: list[str] = field(default_factory=list)   # sidecar file names that were read
    problems: list[str] = field(default_factory=list)


def read_sidecars(model_path: Path, names_in_folder: set[str]) -> SidecarInfo:
    """Merge every sidecar of ``model_path`` found among ``names_in_folder`` (one directory listing)."""
    info = SidecarInfo()
    stem = model_path.name.rpartition(".")[0] or model_path.name
    folder = model_path.parent

    def present(suffix: str) -> Path | None:
        name = stem + suffix
        if name not in names_in_folder:
            return None
        path = folder / name
        if os.path.islink(path):
            homes = {os.path.realpath(folder), os.path.dirname(os.path.realpath(model_path))}
            if os.path.dirname(os.path.realpath(path)) not in homes:
                info.problems.append(f"{name}: a link to a file outside this folder; not read")
                return None
        return path

    for suffix, reader in ((".civitai.info", _read_civitai_info), (".metadata.json", _read_lm_metadata),
                           (".json", _read_a1111_json)):
        path = present(suffix)
        if path is None:
            continue
        data = _load_json(path, info)
        if data is not None:
            info.files.append(path.name)
            reader(data, info, path.name)
    notes = present(".txt")
    if notes is not None:
        text = _load_text(notes, info)
        if len(text) > MAX_TEXT_CHARS:
            info.problems.append(f"{notes.name}: longer than {MAX_TEXT_CHARS} characters; cut")
            text = text[:MAX_TEXT_CHARS].rstrip()
        if text:
            info.files.append(notes.name)
            info.notes = (info.notes + "\n" + text).strip() if info.notes else text
    sha = present(".sha256") if not info.sha256 else None
    if sha is not None:
        text = _load_text(sha, info).split()
        if text and _is_sha256(text[0]):
            info.sha256 = text[0].lower()
            info.files.append(sha.name)
    for suffix in PREVIEW_SUFFIXES:
        if stem + suffix in names_in_folder:  # only named, never read here
            info.preview = stem + suffix
            break
    info.trained_words = _unique(info.trained_words)
    info.tags = _unique(t.lower() for t in info.tags)
    return info


# ----------------------------------------------------------------------------- file formats
def _read_civitai_info(data: dict, info: SidecarInfo, where: str) -> None:
    _read_civitai_version(data, info, where)


def _read_civitai_version(data: dict, info: SidecarInfo, where: str) -> None:
    """A CivitAI model-version object (the by-hash answer), as found in both sidecar kinds."""
    info.civitai_base = info.civitai_base or _string(data, "baseModel", info, where, MAX_TITLE_CHARS)
    info.trained_words += _strings(data, "trainedWords", info, where)
    vid = _number(data, "id", info, where, 0, MAX_ID, whole=True)
    info.civitai_version_id = info.civitai_version_id or int(vid or 0)
    level = _number(data, "nsfwLevel", info, where, 0, MAX_ID, whole=True)
    if level:
        info.nsfw_level = max(info.nsfw_level, int(level))
    stats = _dict(data, "stats", info, where)
    if stats:
        where_stats = f"{where} stats"
        info.downloads = max(info.downloads, _count(stats, "downloadCount", info, where_stats))
        info.thumbs_up = max(info.thumbs_up, _count(stats, "thumbsUpCount", info, where_stats))
        info.thumbs_down = max(info.thumbs_down, _count(stats, "thumbsDownCount", info, where_stats))
    model = _dict(data, "model", info, where)
    if model:
        name = _string(model, "name", info, where, MAX_TITLE_CHARS)
        version = _string(data, "name", info, where, MAX_TITLE_CHARS)
        info.title = info.title or (f"{name} {version}".strip() if name else version)
        info.model_name = info.model_name or name
        info.tags += _strings(model, "tags", info, where)
        info.model_description = info.model_description or _string(
            model, "description", info, where, MAX_TEXT_CHARS)[:MAX_SUMMARY_CHARS]
        for flag in ("nsfw", "poi"):
            value = model.get(flag)
            if isinstance(value, bool):
                setattr(info, flag, getattr(info, flag) or value)
    info.description = info.description or _string(data, "description", info, where, MAX_TEXT_CHARS)
    files = data.get("files")
    for file in files if isinstance(files, list) else []:
        hashes = file.get("hashes") if isinstance(file, dict) else None
        sha = hashes.get("SHA256") if isinstance(hashes, dict) else None
        if isinstance(sha, str) and _is_sha256(sha) and file.get("primary", True):
            info.sha256 = info.sha256 or sha.lower()


def _read_lm_metadata(data: dict, info: SidecarInfo, where: str) -> None:
    name = _string(data, "model_name", info, where, MAX_TITLE_CHARS)
    info.title = info.title or name
    info.model_name = info.model_name or name
    info.model_description = info.model_description or _string(
        data, "modelDescription", info, where, MAX_TEXT_CHARS)[:MAX_SUMMARY_CHARS]
    info.civitai_base = info.civitai_base or _string(data, "base_model", info, where, MAX_TITLE_CHARS)
    sha = _string(data, "sha256", info, where, 64)
    if _is_sha256(sha):
        info.sha256 = info.sha256 or sha.lower()
    info.tags += _strings(data, "tags", info, where)
    notes = _string(data, "notes", info, where, MAX_TEXT_CHARS)
    if notes:
        info.notes = notes
    level = _number(data, "preview_nsfw_level", info, where, 0, MAX_ID, whole=True)
    if level:
        info.nsfw_level = max(info.nsfw_level, int(level))
    civitai = _dict(data, "civitai", info, where)
    if civitai:
        _read_civitai_version(civitai, info, f"{where} civitai")
    tips = data.get("usage_tips")
    if isinstance(tips, str) and tips.strip():
        try:  # JSON inside a JSON string: as hostile as the file around it
            tips = bounded_loads(tips, max_bytes=MAX_PROMPT_CHARS)
        except BoundedJSONError as exc:
            info.problems.append(f"{where}: usage_tips: {exc}; ignored")
            tips = None
    if isinstance(tips, dict):
        for key in ("strength", "strength_min", "strength_max", "clip_strength"):
            value = _number(tips, key, info, f"{where} usage_tips", -MAX_STRENGTH, MAX_STRENGTH)
            if value is not None:
                info.usage_tips[key] = float(value)
        skip = _number(tips, "clip_skip", info, f"{where} usage_tips", 0, MAX_CLIP_SKIP, whole=True)
        if skip is not None:
            info.usage_tips["clip_skip"] = float(skip)
    elif tips not in (None, ""):
        info.problems.append(f"{where}: usage_tips has the wrong type; ignored")


def _read_a1111_json(data: dict, info: SidecarInfo, where: str) -> None:
    info.description = info.description or _string(data, "description", info, where, MAX_TEXT_CHARS)
    version = _string(data, "sd version", info, where, MAX_TITLE_CHARS)
    if version and version.lower() != "unknown":
        info.a1111_version = version
    info.activation_text = _string(data, "activation text", info, where, MAX_PROMPT_CHARS)
    info.negative_text = _string(data, "negative text", info, where, MAX_PROMPT_CHARS)
    notes = _string(data, "notes", info, where, MAX_TEXT_CHARS)
    if notes:
        info.notes = (info.notes + "\n" + notes).strip() if info.notes else notes
    weight = _number(data, "preferred weight", info, where, -MAX_STRENGTH, MAX_STRENGTH)
    info.preferred_weight = float(weight or 0.0)


# ----------------------------------------------------------------------------- tolerant getters
def _load_json(path: Path, info: SidecarInfo) -> dict | None:
    text = _load_text(path, info)
    if not text:
        return None
    try:
        data = bounded_loads(text, max_bytes=MAX_SIDECAR_BYTES)
    except BoundedJSONError as exc:
        info.problems.append(f"{path.name}: {exc}; ignored")
        return None
    if not isinstance(data, dict):
        info.problems.append(f"{path.name}: expected a JSON object; ignored")
        return None
    return data


def _load_text(path: Path, info: SidecarInfo) -> str:
    """The sidecar's text ("" when unreadable, with the reason recorded; a sidecar that vanished
    since the folder was listed is simply absent). Windows editors' BOM is dropped; bytes that
    are not UTF-8 are replaced, with a problem saying so."""
    try:
        raw = read_regular(path, MAX_SIDECAR_BYTES)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        info.problems.append(f"{path.name}: cannot read ({exc.strerror or exc}); ignored")
        return ""
    if len(raw) > MAX_SIDECAR_BYTES:
        info.problems.append(f"{path.name}: larger than {MAX_SIDECAR_BYTES} bytes; ignored")
        return ""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        info.problems.append(f"{path.name}: not valid UTF-8 (byte {exc.start}); unreadable bytes replaced")
        text = raw.decode("utf-8-sig", errors="replace")
    return text.strip()


def _string(data: dict, key: str, info: SidecarInfo, where: str, limit: int) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        info.problems.append(f"{where}: {key} should be text, found {type(value).__name__}; ignored")
        return ""
    value = value.strip()
    if len(value) > limit:
        info.problems.append(f"{where}: {key} is longer than {limit} characters; cut")
        value = value[:limit].rstrip()
    return value


def _strings(data: dict, key: str, info: SidecarInfo, where: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        info.problems.append(f"{where}: {key} should be a list, found {type(value).__name__}; ignored")
        return []
    if len(value) > MAX_ITEMS:
        info.problems.append(f"{where}: {key} has {len(value)} entries; the first {MAX_ITEMS} kept")
        value = value[:MAX_ITEMS]
    text = [v.strip() for v in value if isinstance(v, str)]
    out = [v for v in text if v and len(v) <= MAX_WORD_CHARS]
    if len(text) < len([v for v in value if v not in (None, "")]):
        info.problems.append(f"{where}: {key} has entries that are not text; skipped")
    if len(out) < len([v for v in text if v]):
        info.problems.append(f"{where}: {key} has entries longer than {MAX_WORD_CHARS} characters; skipped")
    return out


def _number(data: dict, key: str, info: SidecarInfo, where: str, low: float, high: float,
            whole: bool = False) -> float | int | None:
    """data[key] when it is a number in [low, high] (whole when asked), else None; a value of
    another kind is recorded as a problem."""
    value = data.get(key)
    if value is None:
        return None
    fits = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high and (not whole or value == int(value)))
    if not fits:
        kind = "a whole number" if whole else "a number"
        info.problems.append(f"{where}: {key} should be {kind} from {_plain(low)} to {_plain(high)}, "
                             f"found {value!r:.40}; ignored")
        return None
    return int(value) if whole else value


def _plain(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _count(data: dict, key: str, info: SidecarInfo, where: str) -> int:
    return int(_number(data, key, info, where, 0, MAX_COUNT, whole=True) or 0)


def _dict(data: dict, key: str, info: SidecarInfo, where: str) -> dict | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        info.problems.append(f"{where}: {key} should be an object, found {type(value).__name__}; ignored")
        return None
    return value


def _is_sha256(text: Any) -> bool:
    return (isinstance(text, str) and len(text) == 64
            and all(c in "0123456789abcdefABCDEF" for c in text))


def _unique(items) -> list[str]:
    seen, out = set(), []
    for item in items:
        key = item.lower()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
