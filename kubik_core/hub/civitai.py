"""CivitAI REST API v1 client: model search, version lookup by hash or id.

Response shapes follow developer.civitai.com (``/site/reference/models.md``): a model version
has ``id, modelId, name, baseModel, trainedWords, stats, files[{name, sizeKB, primary, hashes,
downloadUrl}], images[{url, nsfwLevel, width, height}]`` and, from the by-hash endpoint, a short
``model {name, type, nsfw, poi}``. Raw responses are returned unchanged (they go into the
``.civitai.info`` sidecar); :func:`summarize_version` gives the few fields our tools use.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from .errors import HubError
from .http import HubSession

SORTS = ("Highest Rated", "Most Downloaded", "Newest")
MODEL_TYPES = ("Checkpoint", "TextualInversion", "Hypernetwork", "AestheticGradient", "LORA",
               "LoCon", "DoRA", "Controlnet", "Upscaler", "VAE", "Poses", "MotionModule")
# Hash lengths the by-hash endpoint takes: CRC32, AutoV2, AutoV3, SHA-256 / BLAKE3.
HASH_LENGTHS = (8, 10, 12, 64)
EMPTY_FILE_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def normalize_hash(value: str) -> str:
    """Validate a hash for the by-hash endpoint; lower-case hex out."""
    value = (value or "").strip()
    if not _HEX.match(value) or len(value) not in HASH_LENGTHS:
        raise ValueError(f"hash {value[:70]!r}: expected hex of length 8 (CRC32), 10 (AutoV2), "
                         "12 (AutoV3) or 64 (SHA-256)")
    value = value.lower()
    if EMPTY_FILE_SHA256.startswith(value):
        raise ValueError("hash: that is the hash of an empty file; the file is empty or unread")
    return value


class CivitaiClient:
    def __init__(self, session: HubSession):
        self.session = session
        self.base = session.config.civitai_base.rstrip("/")

    def search_models(self, query: str = "", *, types: str | None = None,
                      base_models: str | None = None, sort: str | None = None,
                      nsfw: bool | None = None, limit: int = 20,
                      cursor: str | None = None) -> dict[str, Any]:
        """One page of ``GET /models``: ``{"items": [...], "next_cursor": str | None}``."""
        if not 1 <= limit <= 100:
            raise ValueError(f"limit: {limit} is outside 1..100 (CivitAI's page size limit)")
        if sort is not None and sort not in SORTS:
            raise ValueError(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
        params: dict[str, Any] = {"limit": limit}
        if query:
            params["query"] = query
        if types:
            params["types"] = types
        if base_models:
            params["baseModels"] = base_models
        if sort:
            params["sort"] = sort
        if nsfw is not None:
            params["nsfw"] = "true" if nsfw else "false"
        if cursor:
            params["cursor"] = cursor
        body = self.session.get_json(f"{self.base}/models", params=params)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise HubError("CivitAI /models: unexpected answer (no 'items' list)")
        cursor = as_dict(body.get("metadata")).get("nextCursor")
        return {"items": body["items"],
                "next_cursor": cursor if isinstance(cursor, (str, int)) and cursor else None}

    def iter_models(self, query: str = "", *, max_items: int = 100, **filters) -> Iterator[dict]:
        """Follow ``nextCursor`` until ``max_items`` models were yielded or the pages end."""
        cursor = None
        yielded = 0
        while yielded < max_items:
            page = self.search_models(query, cursor=cursor,
                                      limit=min(100, max_items - yielded), **filters)
            for item in page["items"][: max_items - yielded]:
                yielded += 1
                yield item
            cursor = page["next_cursor"]
            if not cursor or not page["items"]:
                return

    def version_by_hash(self, file_hash: str) -> dict[str, Any]:
        """``GET /model-versions/by-hash/{hash}``; raises HubNotFound for unknown hashes."""
        return self._version(f"{self.base}/model-versions/by-hash/{normalize_hash(file_hash)}")

    def version(self, version_id: int) -> dict[str, Any]:
        """``GET /model-versions/{id}``."""
        return self._version(f"{self.base}/model-versions/{_checked_id(version_id)}")

    def model(self, model_id: int) -> dict[str, Any]:
        """``GET /models/{id}`` (name, type, tags, description, every version)."""
        body = self.session.get_json(f"{self.base}/models/{_checked_id(model_id)}")
        if not isinstance(body, dict):
            raise HubError(f"CivitAI model {model_id}: unexpected answer")
        return body

    def _version(self, url: str) -> dict[str, Any]:
        body = self.session.get_json(url)
        if not isinstance(body, dict) or "id" not in body:
            raise HubError(f"CivitAI {url.rsplit('/api/v1', 1)[-1]}: unexpected answer (no version id)")
        return body


def as_id(value: Any) -> int | None:
    """A CivitAI id (a positive integer, possibly sent as digits) or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,15}", value):
        value = int(value)
    return value if isinstance(value, int) and 0 < value < 10**15 else None


def file_size_bytes(file_entry: dict) -> int | None:
    """The size CivitAI lists for a file (``sizeKB``), in bytes; None when missing or absurd."""
    value = file_entry.get("sizeKB")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value * 1024) if 0 < value < 2**50 else None


def primary_file(version: dict) -> dict:
    """The file CivitAI marks ``primary`` (else the first ``Model`` file, else the first)."""
    files = [f for f in as_list(version.get("files")) if isinstance(f, dict)]
    if not files:
        raise HubError(f"CivitAI version {str(version.get('id'))[:20]}: lists no files to download")
    for candidate in files:
        if candidate.get("primary"):
            return candidate
    for candidate in files:
        if candidate.get("type") == "Model":
            return candidate
    return files[0]


def _checked_id(value: Any) -> int:
    checked = as_id(value)
    if checked is None:
        raise HubError(f"CivitAI id {str(value)[:40]!r}: not a positive integer")
    return checked


def as_dict(value: Any) -> dict:
    """``value`` when it is a JSON object, else ``{}`` (answers are data, not trusted shapes)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def file_sha256(file_entry: dict) -> str | None:
    sha = as_dict(file_entry.get("hashes")).get("SHA256")
    return sha.lower() if isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha) else None


def summarize_version(version: dict) -> dict[str, Any]:
    """The fields KubikAI uses from a version, under stable snake_case names (``--json``)."""
    model = as_dict(version.get("model"))
    files = []
    for entry in as_list(version.get("files")):
        if not isinstance(entry, dict):
            continue
        autov2 = as_text(as_dict(entry.get("hashes")).get("AutoV2"))
        files.append({
            "name": as_text(entry.get("name")),
            "size_bytes": file_size_bytes(entry) or 0,
            "sha256": file_sha256(entry),
            "autov2": autov2.lower() if autov2 else None,
            "primary": bool(entry.get("primary")),
            "download_url": as_text(entry.get("downloadUrl")),
        })
    images = [{"url": as_text(image.get("url")), "nsfw_level": image.get("nsfwLevel"),
               "width": image.get("width"), "height": image.get("height")}
              for image in as_list(version.get("images")) if isinstance(image, dict)]
    stats = as_dict(version.get("stats"))
    return {
        "source": "civitai",
        "version_id": version.get("id"),
        "model_id": version.get("modelId"),
        "model_name": as_text(model.get("name")),
        "version_name": as_text(version.get("name")),
        "type": as_text(model.get("type")),
        "base_model": as_text(version.get("baseModel")),
        "trained_words": [w for w in as_list(version.get("trainedWords")) if isinstance(w, str)],
        "nsfw_level": version.get("nsfwLevel"),
        "stats": {"download_count": stats.get("downloadCount"),
                  "thumbs_up_count": stats.get("thumbsUpCount"),
                  "rating": stats.get("rating")},
        "files": files,
        "images": images,
    }
