"""Where the hub clients find their endpoints, tokens, cache and politeness settings.

Tokens come from the environment first, then from an optional JSON config file:

* ``CIVITAI_API_TOKEN`` (or ``CIVITAI_TOKEN``): CivitAI API key, sent as ``Authorization:
  Bearer`` to the CivitAI host only.
* ``HF_TOKEN``: Hugging Face token, sent to the Hugging Face endpoint host only.
* ``KUBIK_CIVITAI_BASE`` / ``HF_ENDPOINT``: other API roots (mirrors, local stand-ins).
* ``KUBIK_HUB_CACHE``: response cache folder (default ``~/.cache/kubik/hub``).
* ``KUBIK_HUB_CONFIG``: path of a JSON file (default ``~/.config/kubik/hub.json``) with any of
  ``civitai_token``, ``hf_token``, ``civitai_base``, ``hf_endpoint``, ``cache_dir``.
* ``KUBIK_HUB_ALLOW_PRIVATE``: let downloads reach loopback/private/LAN addresses (``1``, or a
  list of addresses and networks); refused by default (see :mod:`.netguard`).
* ``KUBIK_HUB_MAX_DOWNLOAD_GB`` (default 100) and ``KUBIK_HUB_DOWNLOAD_HOURS`` (default 12): the
  largest file one download may write, and how long one download may take in all.

Tokens are kept in :class:`Secret` objects whose ``repr``/``str`` never show the value, so a
config printed in a log or an exception stays clean.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..common import bounded_json
from .netguard import ALLOW_PRIVATE_ENV, AddressPolicy

DEFAULT_CIVITAI_BASE = "https://civitai.com/api/v1"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_CONFIG_FILE = Path("~/.config/kubik/hub.json")
DEFAULT_CACHE_DIR = Path("~/.cache/kubik/hub")
CONFIG_FILE_KEYS = ("civitai_token", "hf_token", "civitai_base", "hf_endpoint", "cache_dir")
DEFAULT_MAX_DOWNLOAD_GB = 100.0
DEFAULT_DOWNLOAD_HOURS = 12.0


class Secret:
    """A token that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = (value or "").strip()

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"

    __str__ = __repr__


def host_of(url: str) -> str:
    """Lower-case ``host[:port]`` of a URL, the unit a token is bound to."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _positive_number(env, name: str, default: float) -> float:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}: {text[:40]!r} is not a positive number")
    return value


@dataclass
class HubConfig:
    civitai_base: str = DEFAULT_CIVITAI_BASE
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    civitai_token: Secret = field(default_factory=lambda: Secret(None))
    hf_token: Secret = field(default_factory=lambda: Secret(None))
    cache_dir: Path | None = None          # None: no response cache
    cache_ttl_s: float = 6 * 3600.0
    cache_max_entries: int = 2000
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    min_interval_s: float = 0.25           # polite gap between two requests to one host
    max_attempts: int = 5                  # per request, including the first
    backoff_base_s: float = 1.0            # 1, 2, 4, 8 ... seconds, each times a random 0.5-1.0 (common.http.Backoff)
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0       # a longer Retry-After fails fast with HubRateLimited
    user_agent: str = "KubikAI-hub/0.1"
    # Which non-public addresses downloads may reach (none by default; KUBIK_HUB_ALLOW_PRIVATE).
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    max_download_bytes: int = int(DEFAULT_MAX_DOWNLOAD_GB * 2**30)
    download_deadline_s: float = DEFAULT_DOWNLOAD_HOURS * 3600.0
    min_free_bytes: int = 2**30            # a download never leaves less free space than this

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_s, self.read_timeout_s)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s.reveal() for s in (self.civitai_token, self.hf_token) if s)

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "HubConfig":
        """Read tokens and endpoints from ``env`` (default ``os.environ``) and the config file."""
        env = os.environ if env is None else env
        path = Path(env.get("KUBIK_HUB_CONFIG") or DEFAULT_CONFIG_FILE).expanduser()
        stored = _read_config_file(path)
        civitai_token = (env.get("CIVITAI_API_TOKEN") or env.get("CIVITAI_TOKEN")
                         or stored.get("civitai_token"))
        hf_token = env.get("HF_TOKEN") or stored.get("hf_token")
        cache_dir = env.get("KUBIK_HUB_CACHE") or stored.get("cache_dir") or DEFAULT_CACHE_DIR
        values = dict(
            civitai_base=(env.get("KUBIK_CIVITAI_BASE") or stored.get("civitai_base")
                          or DEFAULT_CIVITAI_BASE).rstrip("/"),
            hf_endpoint=(env.get("HF_ENDPOINT") or stored.get("hf_endpoint")
                         or DEFAULT_HF_ENDPOINT).rstrip("/"),
            civitai_token=Secret(civitai_token),
            hf_token=Secret(hf_token),
            cache_dir=Path(cache_dir).expanduser(),
            address_policy=AddressPolicy.from_setting(env.get(ALLOW_PRIVATE_ENV)),
            max_download_bytes=int(_positive_number(env, "KUBIK_HUB_MAX_DOWNLOAD_GB",
                                                    DEFAULT_MAX_DOWNLOAD_GB) * 2**30),
            download_deadline_s=_positive_number(env, "KUBIK_HUB_DOWNLOAD_HOURS",
                                                 DEFAULT_DOWNLOAD_HOURS) * 3600.0,
        )
        values.update(overrides)
        return cls(**values)


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = bounded_json.loads(path.read_bytes(), max_bytes=1 << 20)
    except (OSError, ValueError) as exc:
        raise ValueError(f"hub config {path}: not readable JSON ({exc.__class__.__name__}); "
                         "fix or delete the file") from None
    if not isinstance(data, dict):
        raise ValueError(f"hub config {path}: expected a JSON object")
    for key in CONFIG_FILE_KEYS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"hub config {path}: {key} must be a string")
    return data
