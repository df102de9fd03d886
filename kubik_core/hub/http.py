"""One polite, retrying HTTP session for every hub request and download.

* Politeness: at least ``min_interval_s`` between two requests to the same host.
* Retries: 408, 425, 429, 5xx, timeouts and dropped connections are retried with exponential
  backoff and jitter; a ``Retry-After`` header (seconds or HTTP date) is honoured as given.
  (That policy is shared with the classifier's image fetcher: :mod:`kubik_core.common.http`.)
* Clear errors: 401/403 -> :class:`HubAuthError`, 404 -> :class:`HubNotFound`, each naming
  the URL (without its query string) and what would fix it. Only the configured hubs' own error
  text is quoted (short, redacted); what other servers answer never reaches a message.
* Redirects are followed here, one hop at a time (at most ``MAX_REDIRECTS``), so that every hop
  gets the same checks as the first.
* Addresses: the configured hubs (CivitAI API, Hugging Face endpoint) are reached as
  configured; every other host (plain URLs, CDNs a hub redirects to, preview images) is
  resolved once per hop, refused when any address is not public (unless allowed, see
  :mod:`.netguard`), and connected to at the address that was checked.
* Tokens: :class:`HostBearer` attaches a token only to its own origin (scheme, host and port)
  and only over https (or to a loopback origin, which never leaves the machine). Each redirect
  hop asks the auth again, so the token never follows a redirect to another host.
"""
from __future__ import annotations

import ipaddress
import random
import threading
import time
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from ..common import bounded_json
from ..common.http import RETRY_STATUSES, Backoff, RateLimiter, parse_retry_after, public_url
from .cache import ResponseCache
from .config import HubConfig, Secret, host_of, origin_of
from .errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnavailable, redact
from .netguard import PinnedAdapter, PrivateAddressRefused, checked_addresses, system_resolver

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
_MAX_PINNED_ADAPTERS = 16


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (traffic that never leaves the machine)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def may_carry_token(url: str) -> bool:
    """Tokens travel over https only, or to a loopback origin (which browsers also treat as
    secure): never in clear text over a network."""
    scheme, host, _port = origin_of(url)
    return scheme == "https" or (scheme == "http" and is_loopback_host(host))


class HostBearer(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on requests to one origin, nothing anywhere else."""

    def __init__(self, token: Secret, base_url: str):
        self._token = token
        self._origin = origin_of(base_url)

    @property
    def active(self) -> bool:
        return bool(self._token)

    def __call__(self, request):
        if self._token and origin_of(request.url) == self._origin and may_carry_token(request.url):
            request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request


class HubSession:
    """A ``requests.Session`` with the hub policies above. Thread-safe for concurrent use."""

    def __init__(self, config: HubConfig, session: requests.Session | None = None,
                 sleep=time.sleep, rng=random.random, resolve=system_resolver):
        """``resolve(host, port) -> [addresses]`` looks up hosts that are not configured hubs
        (the system resolver; another one lets a caller use its own name service)."""
        self.config = config
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = config.user_agent
        self._sleep = sleep
        self._backoff = Backoff(config.backoff_base_s, config.backoff_max_s, rng=rng)
        self._pace = RateLimiter(config.min_interval_s, sleep=sleep)
        self._resolve = resolve
        self._lock = threading.Lock()
        self._pinned: dict[tuple[str, ...], PinnedAdapter] = {}
        self.cache = (ResponseCache(config.cache_dir, config.cache_ttl_s, config.cache_max_entries)
                      if config.cache_dir else None)
        self._auth = {
            host_of(config.civitai_base): HostBearer(config.civitai_token, config.civitai_base),
            host_of(config.hf_endpoint): HostBearer(config.hf_token, config.hf_endpoint),
        }

    def is_hub_url(self, url: str) -> bool:
        """True for the configured CivitAI API and Hugging Face hosts."""
        return host_of(url) in self._auth

    # ------------------------------------------------------------ politeness and backoff
    def wait_turn(self, host: str) -> None:
        """Wait until ``min_interval_s`` has passed since the last request to ``host``."""
        self._pace.wait(host)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...): exponential, jittered."""
        return self._backoff.delay(attempt)

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    # ------------------------------------------------------------ requests
    def request(self, method: str, url: str, *, params: dict | None = None,
                headers: dict | None = None, stream: bool = False,
                ok_statuses: tuple[int, ...] = (200,)) -> requests.Response:
        """Send one request with retries; return a response whose status is in ``ok_statuses``."""
        host = host_of(url)
        attempts = max(1, self.config.max_attempts)
        for attempt in range(1, attempts + 1):
            self.wait_turn(host)
            try:
                response = self._follow(method, url, params, headers, stream)
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
                if wait is not None and wait > self.config.max_retry_after_s:
                    if response.status_code == 429:
                        raise HubRateLimited(f"{public_url(url)}: rate limited, the server asks "
                                             f"to wait {wait:.0f} s; try again later")
                    raise HubUnavailable(f"{public_url(url)}: {_status_words(response.status_code)}, "
                                         f"the server asks to wait {wait:.0f} s; try again later")
                if attempt == attempts:
                    break
                self.pause(wait if wait is not None else self.backoff(attempt))
                continue
            self.raise_for_status(response)
            raise HubError(f"{public_url(url)}: unexpected HTTP {response.status_code}")
        if response.status_code == 429:
            raise HubRateLimited(f"{public_url(url)}: still rate limited (429) after {attempts} "
                                 "attempts; wait a few minutes and try again")
        raise HubUnavailable(f"{public_url(url)}: {_status_words(response.status_code)} after "
                             f"{attempts} attempts; the hub may be down, try again later")

    def _follow(self, method: str, url: str, params: dict | None, headers: dict | None,
                stream: bool) -> requests.Response:
        """Send one request and follow its redirects hop by hop (each hop checked afresh)."""
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                response = self._send_hop(method, current, params if hop == 0 else None,
                                          headers, stream)
            except PrivateAddressRefused as exc:
                if hop == 0:
                    raise PrivateAddressRefused(f"{public_url(url)}: {exc}") from None
                raise PrivateAddressRefused(f"{public_url(url)} redirected to "
                                            f"{public_url(current)}: {exc}") from None
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                return response
            response.close()
            current = urljoin(response.url or current, location)
            if not _followable(current):
                raise HubError(f"{public_url(url)}: redirected to something that is not an "
                               "http(s) address with a host, which the hub does not follow")
            if response.status_code == 303:
                method = "GET"
        raise HubError(f"{public_url(url)}: more than {MAX_REDIRECTS} redirects; the link is "
                       "broken or loops")

    def _send_hop(self, method: str, url: str, params: dict | None, headers: dict | None,
                  stream: bool) -> requests.Response:
        auth = self._auth.get(host_of(url))
        if self.is_hub_url(url):
            return self._session.request(method, url, params=params, headers=headers, auth=auth,
                                         stream=stream, timeout=self.config.timeout,
                                         allow_redirects=False)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = checked_addresses(parts.hostname or "", port, self.config.address_policy,
                                          self._resolve)
        except (OSError, UnicodeError) as exc:   # the name does not resolve
            raise requests.ConnectionError(f"cannot resolve {parts.hostname}: {exc}") from None
        prepared = self._session.prepare_request(
            requests.Request(method, url, params=params, headers=headers, auth=auth))
        settings = self._session.merge_environment_settings(prepared.url, {}, stream, None, None)
        # Straight to the checked address: a proxy would resolve the name again itself.
        return self._pinned_adapter(addresses).send(
            prepared, stream=stream, timeout=self.config.timeout, verify=settings["verify"],
            cert=settings["cert"], proxies={})

    def _pinned_adapter(self, addresses: tuple[str, ...]) -> PinnedAdapter:
        """One adapter (and connection pool) per checked address set, the oldest closed first."""
        with self._lock:
            adapter = self._pinned.get(addresses)
            if adapter is None:
                if len(self._pinned) >= _MAX_PINNED_ADAPTERS:
                    self._pinned.pop(next(iter(self._pinned))).close()
                adapter = self._pinned[addresses] = PinnedAdapter(addresses)
            return adapter

    def raise_for_status(self, response: requests.Response) -> None:
        """Turn a 4xx into the matching hub error; a configured hub's own short message is
        quoted (redacted), another server's answer never is."""
        status = response.status_code
        if status < 400:
            return
        url = public_url(response.url or "")
        detail = _server_message(response) if self.is_hub_url(response.url or "") else ""
        detail = f" ({redact(detail, self.config.secrets())})" if detail else ""
        if status in (401, 403):
            raise HubAuthError(f"{url}: access denied (HTTP {status}){detail}; "
                               f"{self._auth_hint(response.url or '')}")
        if status == 404:
            raise HubNotFound(f"{url}: not found (HTTP 404){detail}")
        raise HubError(f"{url}: HTTP {status}{detail}")

    def _auth_hint(self, url: str) -> str:
        host = host_of(url)
        if host in self._auth and not may_carry_token(url):
            return (f"tokens are sent over https only, and {host} was reached over plain http; "
                    "use an https address for the hub")
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
            value = bounded_json.loads(response.content)
        except ValueError as exc:
            raise HubError(f"{public_url(url)}: the server did not answer usable JSON "
                           f"({str(exc)[:80]})") from None
        if key is not None:
            self.cache.put(key, value)
        return value

    def close(self) -> None:
        with self._lock:
            adapters, self._pinned = list(self._pinned.values()), {}
        for adapter in adapters:
            adapter.close()
        self._session.close()


def _followable(url: str) -> bool:
    """True for an http(s) URL with a host name and a valid port."""
    try:
        parts = urlsplit(url)
        parts.port   # raises ValueError when out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _status_words(status: int) -> str:
    """'server error 503' for a 5xx; 'HTTP 408' for the 4xx that are retried too."""
    return f"server error {status}" if status >= 500 else f"HTTP {status}"


def _describe_network_error(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return "connection failed"


def _server_message(response: requests.Response) -> str:
    """The short ``error``/``message`` text of a hub's JSON error answer ('' if none)."""
    try:
        # At most 64 KiB, also from a streamed response that was never read.
        body = bounded_json.loads(next(response.iter_content(65536), b""))
    except (ValueError, requests.RequestException):
        return ""
    if isinstance(body, dict):
        message = body.get("error") or body.get("message") or ""
        if isinstance(message, str):
            return " ".join(message.split())[:200]
    return ""
