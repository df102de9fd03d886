"""A small on-disk cache of JSON API responses.

Hub metadata changes slowly and both hubs rate-limit, so ``kubik hub enrich`` over a few
hundred LoRAs, or a UI re-running a search, should not ask twice. Entries are keyed by method
and URL (never by headers, so no token reaches the key or the file), expire after a TTL, are
written atomically, and the oldest are dropped beyond ``max_entries``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..common import bounded_json
from ..common.atomic import write_text_atomic


class ResponseCache:
    def __init__(self, directory: Path, ttl_s: float = 6 * 3600.0, max_entries: int = 2000,
                 clock=time.time):
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".json")

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        try:
            entry = bounded_json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None  # missing, or torn by a crash: treat as a miss
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        stored_at = entry.get("stored_at")
        if not isinstance(stored_at, (int, float)) or self._clock() - stored_at > self.ttl_s:
            return None
        return entry.get("value")

    def put(self, key: str, value: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"key": key, "stored_at": self._clock(), "value": value})
        write_text_atomic(self._path(key), payload)
        self._evict()

    def _evict(self) -> None:
        entries = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for stale in entries[: max(0, len(entries) - self.max_entries)]:
            stale.unlink(missing_ok=True)
