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
        metadata = body.get("metadata") or {}
        return {"items": body["items"], "next_cursor": metadata.get("nextCursor") or None}

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
        return self._version(f"{self.base}/model-versions/{int(version_id)}")

    def model(self, model_id: int) -> dict[str, Any]:
        """``GET /models/{id}`` (name, type, tags, description, every version)."""
        body = self.session.get_json(f"{self.base}/models/{int(model_id)}")
        if not isinstance(body, dict):
            raise HubError(f"CivitAI model {model_id}: unexpected answer")
        return body

    def _version(self, url: str) -> dict[str, Any]:
        body = self.session.get_json(url)
        if not isinstance(body, dict) or "id" not in body:
            raise HubError(f"CivitAI {url.rsplit('/api/v1', 1)[-1]}: unexpected answer (no version id)")
        return body


def primary_file(version: dict) -> dict:
    """The file CivitAI marks ``primary`` (else the first ``Model`` file, else the first)."""
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    if not files:
        raise HubError(f"CivitAI version {version.get('id')}: lists no files to download")
    for candidate in files:
        if candidate.get("primary"):
            return candidate
    for candidate in files:
        if candidate.get("type") == "Model":
            return candidate
    return files[0]


def file_sha256(file_entry: dict) -> str | None:
    sha = (file_entry.get("hashes") or {}).get("SHA256")
    return sha.lower() if isinstance(sha, str) and len(sha) == 64 else None


def summarize_version(version: dict) -> dict[str, Any]:
    """The fields KubikAI uses from a version, under stable snake_case names (``--json``)."""
    model = version.get("model") or {}
    files = []
    for entry in version.get("files") or []:
        hashes = entry.get("hashes") or {}
        files.append({
            "name": entry.get("name"),
            "size_bytes": int(float(entry.get("sizeKB") or 0) * 1024),
            "sha256": file_sha256(entry),
            "autov2": (hashes.get("AutoV2") or "").lower() or None,
            "primary": bool(entry.get("primary")),
            "download_url": entry.get("downloadUrl"),
        })
    images = [{"url": image.get("url"), "nsfw_level": image.get("nsfwLevel"),
               "width": image.get("width"), "height": image.get("height")}
              for image in version.get("images") or [] if isinstance(image, dict)]
    stats = version.get("stats") or {}
    return {
        "source": "civitai",
        "version_id": version.get("id"),
        "model_id": version.get("modelId"),
        "model_name": model.get("name"),
        "version_name": version.get("name"),
        "type": model.get("type"),
        "base_model": version.get("baseModel"),
        "trained_words": list(version.get("trainedWords") or []),
        "nsfw_level": version.get("nsfwLevel"),
        "stats": {"download_count": stats.get("downloadCount"),
                  "thumbs_up_count": stats.get("thumbsUpCount"),
                  "rating": stats.get("rating")},
        "files": files,
        "images": images,
    }
