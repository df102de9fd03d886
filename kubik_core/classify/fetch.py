"""Streaming images from URLs: a size-capped LRU disk cache, a rate limit, polite retries.

- Cache: one file per URL (named by the URL's SHA-256) under ``cache_dir``. A hit touches the
  file's mtime; when the cache grows past ``max_bytes`` the least recently used files go first.
  File mtimes (not a database) are the LRU clock because DataLoader workers in several processes
  share the cache; a lost cache entry is only a re-download.
- Resumable: a cut download stays as ``.part`` and continues with an HTTP Range request; a re-run
  of ``kubik classify fetch`` skips everything already cached.
- Rate limit: at most ``requests_per_second`` requests in all; a Fetcher that is one of ``share``
  users of the budget (DataLoader workers, torchrun processes) takes its part of it.
- Retries: 408, 425, 429, 5xx, timeouts and connection errors back off exponentially, waiting
  as long as the server's Retry-After (seconds or HTTP date) asks when it says so; a Retry-After
  longer than ``max_retry_after`` gives the URL up at once. Other 4xx fail at once. The policy
  (statuses, Retry-After, backoff, rate limit) is the hub client's too: :mod:`kubik_core.common.http`.
- Failures are recorded in the cache's ``failures.jsonl`` (one line per URL, capped); training
  does not ask for a recorded URL again, ``kubik classify fetch`` retries them all.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..common import bounded_json
from ..common.http import RETRY_STATUSES, Backoff, RateLimiter, parse_retry_after
from ..common.paths import writable_folder

FAILURES_FILE = "failures.jsonl"


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
    backoff_base: float = 1.0        # seconds; retry k waits base * 2**(k-1) (+ up to 25 %)
    backoff_max: float = 60.0
    max_retry_after: float = 120.0   # a server asking to wait longer gives the URL up
    timeout: float = 20.0
    max_image_bytes: int = 64 * 1024 ** 2
    user_agent: str = "KubikAI-classify/1.0"

    def __post_init__(self):
        """Bad settings fail here, named by their command-line flag, not deep in a worker."""
        _require(self.requests_per_second, 0.001, 10_000, "--rate (requests per second)")
        _require(self.max_retries, 0, 20, "--retries", integer=True)
        _require(self.timeout, 0.01, 3600, "--timeout (seconds per request)")
        _require(self.max_bytes, 0, 2 ** 60, "--max-cache-gb")


def _require(value, lo, hi, what: str, integer: bool = False) -> None:
    kind = (int,) if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
            or not lo <= value <= hi):
        raise ValueError(f"{what} must be {'an integer' if integer else 'a number'} from {lo:g} "
                         f"to {hi:g}, got {value!r}")


def check_cache_dir(cache_dir: str | os.PathLike) -> Path:
    """Create the cache folder now, or raise ValueError saying why it cannot be one."""
    return writable_folder(cache_dir, "--cache-dir")


class Fetcher:
    """Get image bytes for a URL through the cache; see the module docstring for the policy."""

    def __init__(self, config: FetchConfig, sleep: Callable[[float], None] = time.sleep,
                 share: int = 1):
        """``share``: how many fetchers split ``requests_per_second`` (DataLoader workers x
        processes); each one waits ``share`` times longer between its requests."""
        self.config = config
        self.cache_dir = Path(config.cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.limiter = RateLimiter.per_second(config.requests_per_second / max(1, share), sleep=sleep)
        self.backoff = Backoff(config.backoff_base, config.backoff_max, jitter=(1.0, 1.25))
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
                    if wait is not None and wait > self.config.max_retry_after:
                        raise FetchError(url, f"{last_reason}, the server asks to wait {wait:.0f} s "
                                         f"(more than {self.config.max_retry_after:.0f} s): given "
                                         "up; run `kubik classify fetch` again later", permanent=False)
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
                wait = self.backoff.delay(attempt + 1)
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
    """JSONL record of images that could not be used (URL errors, corrupt files).

    It stays small however long a run lasts: a source already recorded is not written again
    (checked, under a lock every process takes, against lines that other processes appended
    too), and after ``max_entries`` lines nothing more is written. Lines that do not parse (a
    damaged log) are ignored.
    """

    MAX_REASON = 500
    MAX_SOURCE = 2000
    MAX_READ = 32 * 1024 * 1024  # a full log is ~25 MB; a larger file is read that far only

    def __init__(self, path: str | os.PathLike, max_entries: int = 10_000):
        self.path = Path(path)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._lines = 0
        self._offset = 0      # bytes of the file already read into _known

    def __getstate__(self):  # DataLoader workers get their own lock
        return {**self.__dict__, "_lock": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _file_lock(self):
        """The lock that other processes writing this log take too. Its file sits in the temporary
        folder, named after the log's full path, so that a run folder holds only what the run wrote
        (a refused run leaves just its skipped.jsonl, which must not count as an earlier run)."""
        import hashlib
        import tempfile

        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(os.path.realpath(self.path).encode("utf-8", "surrogatepass")).hexdigest()[:24]
        folder = Path(tempfile.gettempdir()) / f"kubik-locks-{getattr(os, 'getuid', lambda: 'user')()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        return FileLock(str(folder / f"{key}.lock"))

    def _refresh(self) -> None:
        """Take in the lines appended since the last look, by this or another process."""
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        if size < self._offset:  # the file was replaced (forget()): read it again
            self._known, self._lines, self._offset = set(), 0, 0
        if size == self._offset or self._lines >= self.max_entries:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(min(size - self._offset, self.MAX_READ))
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        for row in self._parse(complete):
            self._known.add(row["source"])
            self._lines += 1

    @staticmethod
    def _parse(data: bytes):
        for line in data.splitlines():
            try:
                row = bounded_json.loads(line, max_depth=4)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("source"), str):
                yield row

    def __contains__(self, source: str) -> bool:
        with self._lock:
            self._refresh()
            return source[:self.MAX_SOURCE] in self._known

    def record(self, source: str, reason: str, **extra) -> bool:
        """Append one line for ``source`` unless it is already recorded or the log is full."""
        source = source[:self.MAX_SOURCE]  # as the line keeps it, so that lookups match
        with self._lock:
            self._refresh()
            if source in self._known or self._lines >= self.max_entries:
                return False
            # Other processes (DataLoader workers, torchrun ranks) append to the same file: the
            # look and the append happen under one lock, or two of them write the same source.
            with self._file_lock():
                self._refresh()
                if source in self._known or self._lines >= self.max_entries:
                    return False
                line = json.dumps({"source": source, "reason": reason[:self.MAX_REASON],
                                   "time": time.time(), **extra})
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                self._refresh()  # counts this line (and any other process appended) once
            self._known.add(source)
            return True

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(self.MAX_READ)
        except FileNotFoundError:
            return []
        return list(self._parse(data[:data.rfind(b"\n") + 1]))

    def forget(self, sources) -> None:
        """Drop the lines of ``sources`` (URLs fetched fine since), rewriting the file atomically."""
        from ..common.atomic import write_text_atomic

        drop = {source[:self.MAX_SOURCE] for source in sources}
        with self._lock, self._file_lock():  # a line another process appends meanwhile is kept
            rows = self.read()
            kept = [row for row in rows if row["source"] not in drop]
            if len(kept) != len(rows):
                write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))
            self._known, self._lines, self._offset = set(), 0, 0
