"""Sidecar files written next to a downloaded model (read by the LoRA library).

For ``<folder>/<stem>.<ext>`` we write (formats documented in ``hub/README.md``):

* ``<stem>.civitai.info``: the raw CivitAI model-version JSON, unchanged (Civitai Helper's
  format; the by-hash answer and ``/model-versions/{id}`` share this shape).
* ``<stem>.metadata.json``: ComfyUI-Lora-Manager's format (``file_name, model_name, file_path,
  size, modified, sha256, base_model, preview_url, preview_nsfw_level, notes, from_civitai,
  civitai, tags, metadata_source, last_checked_at, hash_status``; ``usage_tips`` for LoRAs),
  merged into an existing file so user fields and unknown keys survive, plus our
  ``kubik_source`` object (where the file came from; URLs without their query string).
* ``<stem>.preview.<png|jpeg|webp|gif>``: the first image of the version whose NSFW level is
  at most the caller's limit.

Every file is written atomically; none contains a token.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..common import bounded_json
from ..common.atomic import write_bytes_atomic, write_text_atomic
from ..common.http import public_url
from .errors import HubError
from .http import HubSession

log = logging.getLogger(__name__)

PREVIEW_TYPES = {"image/png": ".png", "image/jpeg": ".jpeg", "image/webp": ".webp",
                 "image/gif": ".gif"}
PREVIEW_MAX_BYTES = 20 * 1024 * 1024
SIDECAR_MAX_BYTES = 16 * 1024 * 1024
# CivitAI NSFW levels are bit flags: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX, 32 blocked.
DEFAULT_PREVIEW_MAX_NSFW = 2


def stem_of(model_path: Path) -> str:
    return Path(model_path).name.rpartition(".")[0] or Path(model_path).name


def civitai_info_path(model_path: Path) -> Path:
    return Path(model_path).with_name(stem_of(model_path) + ".civitai.info")


def metadata_path(model_path: Path) -> Path:
    return Path(model_path).with_name(stem_of(model_path) + ".metadata.json")


def existing_preview(model_path: Path) -> Path | None:
    for ext in PREVIEW_TYPES.values():
        candidate = Path(model_path).with_name(stem_of(model_path) + ".preview" + ext)
        if candidate.exists():
            return candidate
    return None


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None if missing or unreadable (never raises)."""
    try:
        data = bounded_json.loads(Path(path).read_bytes(), max_bytes=SIDECAR_MAX_BYTES)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_civitai_info(model_path: Path, version: dict) -> Path:
    path = civitai_info_path(model_path)
    write_text_atomic(path, json.dumps(version, indent=2, ensure_ascii=False))
    return path


def nsfw_level(image: dict) -> int:
    """An image's CivitAI NSFW level; anything but a small integer counts as blocked (32)."""
    level = image.get("nsfwLevel") or 0
    return level if isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= 32 else 32


def pick_preview(version: dict | None, max_nsfw_level: int = DEFAULT_PREVIEW_MAX_NSFW) -> dict | None:
    for image in (version or {}).get("images") or []:
        if not isinstance(image, dict) or not image.get("url"):
            continue
        if image.get("type", "image") != "image":
            continue
        if not isinstance(image.get("url"), str):
            continue
        if nsfw_level(image) <= max_nsfw_level:
            return image
    return None


def save_preview(session: HubSession, image: dict, model_path: Path) -> Path | None:
    """Fetch a preview image; a failure is logged and skipped (the model is what matters)."""
    url = image["url"]
    try:
        response = session.request("GET", url, stream=True)
        try:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            ext = PREVIEW_TYPES.get(content_type)
            if ext is None:
                raise HubError(f"unexpected preview type {content_type!r}")
            data = bytearray()
            for chunk in response.iter_content(1 << 16):
                data += chunk
                if len(data) > PREVIEW_MAX_BYTES:
                    raise HubError("preview larger than 20 MiB")
        finally:
            response.close()
    except Exception as exc:  # noqa: BLE001 - any failure only costs the preview
        log.warning("preview for %s skipped: %s", Path(model_path).name, exc)
        return None
    path = Path(model_path).with_name(stem_of(model_path) + ".preview" + ext)
    return write_bytes_atomic(path, bytes(data))


def update_metadata_json(model_path: Path, *, sha256: str, size: int, kind: str | None,
                         version: dict | None, source: dict[str, Any],
                         preview: Path | None, preview_nsfw_level: int = 0) -> Path:
    """Merge what we know into ``<stem>.metadata.json`` (LoRA-Manager format)."""
    model_path = Path(model_path)
    path = metadata_path(model_path)
    data = read_json(path) or {}
    now = time.time()
    stem = stem_of(model_path)
    model = (version or {}).get("model") or {}
    data.update({
        "file_name": stem,
        "file_path": model_path.resolve().as_posix(),
        "size": size,
        "sha256": sha256,
        "from_civitai": version is not None,
        "metadata_source": "civitai_api" if version is not None else data.get("metadata_source"),
        "last_checked_at": now,
        "hash_status": "completed",
        "kubik_source": {key: (public_url(value) if key == "url" else value)
                         for key, value in source.items() if value is not None},
    })
    data.setdefault("modified", now)
    data.setdefault("notes", "")
    data.setdefault("tags", [])
    if version is not None:
        data["civitai"] = version
        data["model_name"] = model.get("name") or data.get("model_name") or stem
        data["base_model"] = version.get("baseModel") or data.get("base_model") or ""
    else:
        data.setdefault("model_name", stem)
        data.setdefault("base_model", "")
        data.setdefault("civitai", {})
    if preview is not None:
        data["preview_url"] = preview.resolve().as_posix()
        data["preview_nsfw_level"] = int(preview_nsfw_level or 0)
    else:
        data.setdefault("preview_url", "")
        data.setdefault("preview_nsfw_level", 0)
    if kind == "loras":
        data.setdefault("usage_tips", "{}")
    elif kind == "checkpoints":
        data.setdefault("model_type", "checkpoint")
    elif kind == "embeddings":
        data.setdefault("model_type", "embedding")
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))
    return path
