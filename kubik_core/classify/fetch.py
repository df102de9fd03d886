"""Streaming images from URLs: a size-capped LRU disk cache, a rate limit, polite retries.

- Cache: one file per URL (named by the URL's SHA-256) under ``cache_dir``. A hit touches the
  file's mtime; when the cache grows past ``max_bytes`` the least recently used files go first.
  File mtimes (not a database) are the LRU clock because DataLoader workers in several processes
  share the cache; a lost cache entry is only a re-download.
- Resumable: a cut download stays as ``.part`` and continues with an HTTP Range request; a re-run
  of ``kubik classify fetch`` skips everything already cached.
- Rate limit: at most ``requests_per_second`` requests per process.
- Retries: 429, 5xx, timeouts and connection errors back off exponentially, waiting as long as
  the server's Retry-After (seconds or HTTP date) asks when it says so. 4xx other than 408/429
  fail at once. Failures are recorded in ``failures.jsonl``; they never stop a run.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..hub.http import parse_retry_after

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class FetchError(IOError):
    """A URL that could not be fetched; ``permanent`` is False when retrying later may help."""

    def __init__(self, url: str, reason: str, permanent: bool):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.permanent = url, reason, permanent


@dataclass
class FetchConfig:
    cache_dir: str
    max_bytes: int = 10 * 1024 ** 3
    requests_per_second: float = 5.0
    max_retries: int = 4
    backoff_base: float = 1.0        # seconds; attempt k waits base * 2**k (+ jitter)
    backoff_max: float = 60.0
    timeout: float = 20.0
    max_image_bytes: int = 64 * 1024 ** 2
    user_agent: str = "KubikAI-classify/1.0"


class RateLimiter:
    """Spaces calls at least 1/rate seconds apart (thread-safe)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class Fetcher:
    """Get image bytes for a URL through the cache; see the module docstring for the policy."""

    def __init__(self, config: FetchConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.cache_dir = Path(config.cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.limiter = RateLimiter(config.requests_per_second, sleep=sleep)
        self._sleep = sleep
        self._session = None

    # ------------------------------------------------------------------ cache
    def cache_path(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / digest

    def cached(self, url: str) -> bool:
        return self.cache_path(url).is_file()

    def cache_size(self) -> int:
        return sum(p.stat().st_size for p in self._entries())

    def _entries(self):
        return [p for p in self.cache_dir.glob("??/*") if p.is_file() and not p.name.endswith(".part")]

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the cache fits ``max_bytes``; returns bytes freed."""
        entries = []
        for p in self._entries():
            try:
                st = p.stat()
            except FileNotFoundError:  # another worker evicted it
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total - freed <= self.config.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            try:
                path.unlink()
                freed += size
            except FileNotFoundError:
                pass
        return freed

    # ------------------------------------------------------------------ network
    def _http(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers["User-Agent"] = self.config.user_agent
        return self._session

    def get(self, url: str) -> bytes:
        """Bytes for ``url``: from the cache, else downloaded (with retries) and cached."""
        path = self.cache_path(url)
        try:
            data = path.read_bytes()
            os.utime(path)  # LRU: a hit is a use
            return data
        except FileNotFoundError:
            pass
        data = self._download(url, path)
        self.evict(keep=path)
        return data

    def _download(self, url: str, path: Path) -> bytes:
        import requests

        part = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        last_reason = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            self.limiter.wait()
            offset = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            wait = None
            try:
                with self._http().get(url, headers=headers, stream=True,
                                      timeout=self.config.timeout) as resp:
                    if resp.status_code in (200, 206):
                        self._receive(resp, part, append=resp.status_code == 206 and offset > 0, url=url)
                        os.replace(part, path)
                        return path.read_bytes()
                    if resp.status_code == 416 and offset:  # our .part is stale: start over
                        part.unlink(missing_ok=True)
                        last_reason = "HTTP 416 (range not satisfiable)"
                        continue
                    last_reason = f"HTTP {resp.status_code}"
                    if resp.status_code not in RETRY_STATUSES:
                        raise FetchError(url, last_reason, permanent=True)
                    wait = parse_retry_after(resp.headers.get("Retry-After"))
            except requests.Timeout:
                last_reason = "timed out"
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema) as exc:
                raise FetchError(url, f"invalid URL ({exc})", permanent=True) from None
            except requests.RequestException as exc:  # refused, reset, cut mid-body
                last_reason = f"connection failed ({type(exc).__name__})"
            if attempt == self.config.max_retries:
                break
            if wait is None:
                wait = self.config.backoff_base * (2 ** attempt) * (1.0 + 0.25 * random.random())
            self._sleep(min(wait, self.config.backoff_max))
        raise FetchError(url, f"{last_reason} after {self.config.max_retries + 1} attempts",
                         permanent=False)

    def _receive(self, resp, part: Path, append: bool, url: str) -> None:
        """Stream the body into ``part``; a body shorter than Content-Length counts as a cut connection."""
        import requests

        size = part.stat().st_size if append else 0
        received = 0
        with open(part, "ab" if append else "wb") as fh:
            for chunk in resp.iter_content(chunk_size=1 << 13):
                size += len(chunk)
                received += len(chunk)
                if size > self.config.max_image_bytes:
                    fh.close()
                    part.unlink(missing_ok=True)
                    raise FetchError(url, f"larger than {self.config.max_image_bytes} bytes", permanent=True)
                fh.write(chunk)
        expected = resp.headers.get("Content-Length")
        if expected is not None and expected.isdigit() and received != int(expected):
            raise requests.ConnectionError(f"short read: {received} of {expected} bytes")


class FailureLog:
    """Append-only JSONL record of images that could not be used (URL errors, corrupt files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, source: str, reason: str, **extra) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"source": source, "reason": reason, "time": time.time(), **extra})
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
