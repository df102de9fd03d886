"""Read the files people keep next to their LoRAs, whatever tool wrote them.

For ``<stem>.safetensors`` in one folder:

* ``<stem>.civitai.info``: CivitAI's model-version JSON as Civitai Helper and kubik_core.hub save
  it (``baseModel``, ``trainedWords``, ``stats``, ``model{name, tags, nsfw}``, ``nsfwLevel``).
* ``<stem>.metadata.json``: ComfyUI-Lora-Manager's schema (``model_name``, ``base_model``,
  ``sha256``, ``tags``, ``notes``, ``civitai`` = a version object, ``usage_tips`` = a JSON
  string ``{strength_min, strength_max, strength, clip_strength, clip_skip}``).
* ``<stem>.json``: A1111's user metadata (``description``, ``sd version``, ``activation text``,
  ``preferred weight`` where 0 means unset, ``negative text``, ``notes``).
* ``<stem>.txt``: free notes; ``<stem>.preview.png`` / ``<stem>.png`` (or jpg/jpeg/webp): preview.

Sidecars are hand-edited and written by many tools: a value of the wrong type is skipped with
a problem recorded, never an exception, and never a reason to drop the LoRA.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIDECAR_SUFFIXES = (".civitai.info", ".metadata.json", ".json", ".txt", ".sha256")
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpeg", ".preview.jpg", ".preview.webp",
                    ".png", ".jpeg", ".jpg", ".webp")
MAX_SIDECAR_BYTES = 8 * 1024 * 1024
# CivitAI nsfwLevel bit flags: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX, 32 blocked.
NSFW_LEVEL_R = 4


@dataclass
class SidecarInfo:
    """What the sidecars of one LoRA say, merged (CivitAI first, then LM, then A1111)."""

    title: str = ""
    civitai_base: str = ""
    a1111_version: str = ""
    trained_words: list[str] = field(default_factory=list)
    activation_text: str = ""
    negative_text: str = ""
    tags: list[str] = field(default_factory=list)
    description: str = ""
    notes: str = ""
    nsfw: bool = False
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
        return folder / name if name in names_in_folder else None

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
        if text:
            info.files.append(notes.name)
            info.notes = (info.notes + "\n" + text).strip() if info.notes else text
    sha = present(".sha256")
    if sha is not None and not info.sha256:
        text = _load_text(sha, info).split()
        if text and _is_sha256(text[0]):
            info.sha256 = text[0].lower()
            info.files.append(sha.name)
    for suffix in PREVIEW_SUFFIXES:
        if present(suffix) is not None:
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
    info.civitai_base = info.civitai_base or _string(data, "baseModel", info, where)
    info.trained_words += _strings(data, "trainedWords", info, where)
    vid = _number(data, "id", info, where)
    info.civitai_version_id = info.civitai_version_id or int(vid or 0)
    level = _number(data, "nsfwLevel", info, where)
    if level:
        info.nsfw_level = max(info.nsfw_level, int(level))
    stats = _dict(data, "stats", info, where)
    if stats:
        info.downloads = max(info.downloads, int(_number(stats, "downloadCount", info, where) or 0))
        info.thumbs_up = max(info.thumbs_up, int(_number(stats, "thumbsUpCount", info, where) or 0))
        info.thumbs_down = max(info.thumbs_down, int(_number(stats, "thumbsDownCount", info, where) or 0))
    model = _dict(data, "model", info, where)
    if model:
        name = _string(model, "name", info, where)
        version = _string(data, "name", info, where)
        info.title = info.title or (f"{name} {version}".strip() if name else version)
        info.tags += _strings(model, "tags", info, where)
        nsfw = model.get("nsfw")
        if isinstance(nsfw, bool):
            info.nsfw = info.nsfw or nsfw
    info.description = info.description or _string(data, "description", info, where)
    files = data.get("files")
    for file in files if isinstance(files, list) else []:
        hashes = file.get("hashes") if isinstance(file, dict) else None
        sha = hashes.get("SHA256") if isinstance(hashes, dict) else None
        if isinstance(sha, str) and _is_sha256(sha) and file.get("primary", True):
            info.sha256 = info.sha256 or sha.lower()


def _read_lm_metadata(data: dict, info: SidecarInfo, where: str) -> None:
    info.title = info.title or _string(data, "model_name", info, where)
    info.civitai_base = info.civitai_base or _string(data, "base_model", info, where)
    sha = _string(data, "sha256", info, where)
    if _is_sha256(sha):
        info.sha256 = info.sha256 or sha.lower()
    info.tags += _strings(data, "tags", info, where)
    notes = _string(data, "notes", info, where)
    if notes:
        info.notes = notes
    level = _number(data, "preview_nsfw_level", info, where)
    if level:
        info.nsfw_level = max(info.nsfw_level, int(level))
    civitai = _dict(data, "civitai", info, where)
    if civitai:
        _read_civitai_version(civitai, info, f"{where} civitai")
    tips = data.get("usage_tips")
    if isinstance(tips, str) and tips.strip():
        try:
            tips = json.loads(tips)
        except ValueError:
            info.problems.append(f"{where}: usage_tips is not valid JSON; ignored")
            tips = None
    if isinstance(tips, dict):
        for key in ("strength", "strength_min", "strength_max", "clip_strength", "clip_skip"):
            value = tips.get(key)
            if value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                info.usage_tips[key] = float(value)
            else:
                info.problems.append(f"{where}: usage_tips.{key} is not a number; ignored")
    elif tips not in (None, ""):
        info.problems.append(f"{where}: usage_tips has the wrong type; ignored")


def _read_a1111_json(data: dict, info: SidecarInfo, where: str) -> None:
    info.description = info.description or _string(data, "description", info, where)
    version = _string(data, "sd version", info, where)
    if version and version.lower() != "unknown":
        info.a1111_version = version
    info.activation_text = _string(data, "activation text", info, where)
    info.negative_text = _string(data, "negative text", info, where)
    notes = _string(data, "notes", info, where)
    if notes:
        info.notes = (info.notes + "\n" + notes).strip() if info.notes else notes
    weight = _number(data, "preferred weight", info, where)
    info.preferred_weight = float(weight or 0.0)


# ----------------------------------------------------------------------------- tolerant getters
def _load_json(path: Path, info: SidecarInfo) -> dict | None:
    text = _load_text(path, info)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        info.problems.append(f"{path.name}: not valid JSON ({exc}); ignored")
        return None
    if not isinstance(data, dict):
        info.problems.append(f"{path.name}: expected a JSON object; ignored")
        return None
    return data


def _load_text(path: Path, info: SidecarInfo) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        info.problems.append(f"{path.name}: cannot read ({exc.strerror or exc})")
        return ""
    if len(raw) > MAX_SIDECAR_BYTES:
        info.problems.append(f"{path.name}: larger than {MAX_SIDECAR_BYTES} bytes; ignored")
        return ""
    return raw.decode("utf-8", errors="replace").strip()


def _string(data: dict, key: str, info: SidecarInfo, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    info.problems.append(f"{where}: {key} should be text, found {type(value).__name__}; ignored")
    return ""


def _strings(data: dict, key: str, info: SidecarInfo, where: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        info.problems.append(f"{where}: {key} should be a list, found {type(value).__name__}; ignored")
        return []
    out = [v.strip() for v in value if isinstance(v, str) and v.strip()]
    if len(out) < len([v for v in value if v not in (None, "")]):
        info.problems.append(f"{where}: {key} has entries that are not text; skipped")
    return out


def _number(data: dict, key: str, info: SidecarInfo, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        info.problems.append(f"{where}: {key} should be a number, found {value!r:.40}; ignored")
        return None
    return value


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
