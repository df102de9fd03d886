"""One polite, retrying HTTP session for every hub request and download.

* Politeness: at least ``min_interval_s`` between two requests to the same host.
* Retries: 429, 5xx, timeouts and dropped connections are retried with exponential backoff
  and full jitter; a ``Retry-After`` header (seconds or HTTP date) is honoured as given.
* Clear errors: 401/403 -> :class:`HubAuthError`, 404 -> :class:`HubNotFound`, each naming
  the URL (without its query string) and what would fix it.
* Tokens: a token is attached by :class:`HostBearer` only when the request goes to the host it
  belongs to. On a redirect, requests' ``Session.rebuild_auth`` drops ``Authorization`` when the
  host changes (CivitAI's download redirects to a CDN) and does not call our auth again, so the
  token never leaves its host. Tests check both.
"""
from __future__ import annotations

import email.utils
import random
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from .cache import ResponseCache
from .config import HubConfig, Secret, host_of
from .errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnavailable, redact

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HostBearer(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on requests to one host, nothing anywhere else."""

    def __init__(self, token: Secret, host: str):
        self._token = token
        self._host = host

    @property
    def active(self) -> bool:
        return bool(self._token)

    def __call__(self, request):
        if self._token and host_of(request.url) == self._host:
            request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request


def public_url(url: str) -> str:
    """The URL without query string or fragment, safe to show in messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date)."""
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


class HubSession:
    """A ``requests.Session`` with the hub policies above. Thread-safe for concurrent use."""

    def __init__(self, config: HubConfig, session: requests.Session | None = None,
                 sleep=time.sleep, rng=random.random):
        self.config = config
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = config.user_agent
        self._sleep = sleep
        self._rng = rng
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self.cache = (ResponseCache(config.cache_dir, config.cache_ttl_s, config.cache_max_entries)
                      if config.cache_dir else None)
        self._auth = {
            host_of(config.civitai_base): HostBearer(config.civitai_token, host_of(config.civitai_base)),
            host_of(config.hf_endpoint): HostBearer(config.hf_token, host_of(config.hf_endpoint)),
        }

    # ------------------------------------------------------------ politeness and backoff
    def _wait_turn(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_slot.get(host, 0.0))
            self._next_slot[host] = start + self.config.min_interval_s
        if start > now:
            self._sleep(start - now)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (1, 2, ...)."""
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return cap * (0.5 + 0.5 * self._rng())

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    # ------------------------------------------------------------ requests
    def request(self, method: str, url: str, *, params: dict | None = None,
                headers: dict | None = None, stream: bool = False,
                ok_statuses: tuple[int, ...] = (200,)) -> requests.Response:
        """Send one request with retries; return a response whose status is in ``ok_statuses``."""
        host = host_of(url)
        auth = self._auth.get(host)
        attempts = max(1, self.config.max_attempts)
        for attempt in range(1, attempts + 1):
            self._wait_turn(host)
            try:
                response = self._session.request(
                    method, url, params=params, headers=headers, auth=auth, stream=stream,
                    timeout=self.config.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == attempts:
                    raise HubUnavailable(
                        f"{public_url(url)}: {_describe_network_error(exc)} after {attempts} "
                        "attempts; check the network or try again later") from None
                self.pause(self.backoff(attempt))
                continue
            if response.status_code in ok_statuses:
                return response
            if response.status_code in RETRY_STATUSES:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                response.close()
                if response.status_code == 429 and wait is not None and wait > self.config.max_retry_after_s:
                    raise HubRateLimited(f"{public_url(url)}: rate limited, the server asks to wait "
                                         f"{wait:.0f} s; try again later")
                if attempt == attempts:
                    break
                self.pause(wait if wait is not None else self.backoff(attempt))
                continue
            self.raise_for_status(response)
            raise HubError(f"{public_url(url)}: unexpected HTTP {response.status_code}")
        if response.status_code == 429:
            raise HubRateLimited(f"{public_url(url)}: still rate limited (429) after {attempts} "
                                 "attempts; wait a few minutes and try again")
        raise HubUnavailable(f"{public_url(url)}: server error {response.status_code} after "
                             f"{attempts} attempts; the hub may be down, try again later")

    def raise_for_status(self, response: requests.Response) -> None:
        """Turn a 4xx into the matching hub error, with the server's own message if short."""
        status = response.status_code
        if status < 400:
            return
        url = public_url(response.url or "")
        detail = _server_message(response)
        detail = f" ({redact(detail, self.config.secrets())})" if detail else ""
        if status in (401, 403):
            raise HubAuthError(f"{url}: access denied (HTTP {status}){detail}; "
                               f"{self._auth_hint(response.url or '')}")
        if status == 404:
            raise HubNotFound(f"{url}: not found (HTTP 404){detail}")
        raise HubError(f"{url}: HTTP {status}{detail}")

    def _auth_hint(self, url: str) -> str:
        host = host_of(url)
        if host == host_of(self.config.civitai_base):
            return ("set CIVITAI_API_TOKEN to a CivitAI API key (civitai.com > Account settings "
                    "> API keys); some models need a logged-in account or early access")
        if host == host_of(self.config.hf_endpoint):
            return ("set HF_TOKEN to a Hugging Face token with read access, and accept the "
                    "model's licence on its page if the repository is gated")
        return "the server refused the download; a signed link may have expired, fetch a new one"

    def get_json(self, url: str, params: dict | None = None, use_cache: bool = True) -> Any:
        """GET a JSON document, through the response cache when one is configured."""
        key = None
        if self.cache is not None and use_cache:
            query = urlencode(sorted((params or {}).items()), doseq=True)
            auth = self._auth.get(host_of(url))
            authed = bool(auth and auth.active)
            key = f"GET {url}?{query} auth={authed}"
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        response = self.request("GET", url, params=params)
        try:
            value = response.json()
        except ValueError:
            raise HubError(f"{public_url(url)}: the server did not answer JSON") from None
        if key is not None:
            self.cache.put(key, value)
        return value

    def close(self) -> None:
        self._session.close()


def _describe_network_error(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return "connection failed"


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        message = body.get("error") or body.get("message") or ""
        if isinstance(message, str):
            return message[:200]
    return ""
