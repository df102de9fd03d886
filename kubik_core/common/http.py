"""HTTP politeness shared by every client that talks to servers it does not own.

The hub (CivitAI, Hugging Face, plain download URLs) and the classifier's image fetcher follow
one policy, written here once:

- :data:`RETRY_STATUSES`: the answers worth another try (408, 425, 429 and the 5xx that mean
  "busy" or "briefly down"); any other 4xx is final.
- :func:`parse_retry_after`: a server's ``Retry-After`` header, in seconds or as an HTTP date.
- :class:`Backoff`: exponential waits between attempts, with jitter, so that many clients that
  failed together do not come back together.
- :class:`RateLimiter`: a minimum gap between two requests (per host, or for one fetcher).
- :func:`public_url`: a URL without query string or fragment, the part safe to show in messages
  (signed links and tokens live in the query).

What is particular to one client (the hub's tokens, redirects and address checks; the fetcher's
cache and resumable ``.part`` files) stays with that client.
"""
from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date; a date in the
    past means 0); None when there is no header or it is neither."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``base_s`` doubled each retry, capped at ``max_s``, then scaled
    by a random factor from ``jitter`` (low, high); the result never exceeds ``max_s``.

    ``jitter=(0.5, 1.0)`` spreads the clients that failed together over half the step (the hub);
    ``(1.0, 1.25)`` never waits less than the full step (the image fetcher).
    """

    base_s: float = 1.0
    max_s: float = 30.0
    jitter: tuple[float, float] = (0.5, 1.0)
    rng: Callable[[], float] = random.random

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry, 2, ...)."""
        step = min(self.max_s, self.base_s * 2 ** (retry - 1))
        low, high = self.jitter
        return min(self.max_s, step * (low + (high - low) * self.rng()))


class RateLimiter:
    """At least ``interval_s`` seconds between two :meth:`wait` calls with the same key
    (thread-safe). Each caller reserves its slot under the lock and sleeps outside it, so callers
    queue up in order without holding one another."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = max(0.0, interval_s)
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    @classmethod
    def per_second(cls, rate: float, **kwargs) -> "RateLimiter":
        """At most ``rate`` calls per second (no limit for a rate of 0 or less)."""
        return cls(1.0 / rate if rate and rate > 0 else 0.0, **kwargs)

    def wait(self, key: str = "") -> None:
        """Return when this call's turn for ``key`` has come (at once when it already has)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next.get(key, 0.0))
            self._next[key] = start + self.interval
        if start > now:
            self._sleep(start - now)


def public_url(url: str) -> str:
    """The URL without query string or fragment, safe to show in messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
