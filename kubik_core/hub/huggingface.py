"""Hugging Face Hub client over ``huggingface_hub.HfApi``: repo search and file listing.

``huggingface_hub`` reads ``HF_ENDPOINT`` once at import, so the endpoint is always passed
explicitly (``HfApi(endpoint=...)``, ``hf_hub_url(endpoint=...)``), which is also how tests
point it at a local stand-in. API calls share the politeness gap, error messages and response
cache of :mod:`.http` (``HuggingFaceClient._call`` explains how retries combine with
huggingface_hub's own). File bytes are fetched by :mod:`.download` from the ``/resolve/`` URL,
not by ``hf_hub_download``: Hugging Face files then get the same resumable ``.part`` download,
SHA-256 check against the LFS ``oid``, progress, cancel and token-host binding as every other
source, and nothing is written to the huggingface_hub cache.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import __version__
from ..common.http import RETRY_STATUSES, parse_retry_after
from .config import host_of
from .errors import HubAuthError, HubError, HubNotFound, HubRateLimited, HubUnavailable
from .http import HubSession, may_carry_token


class HuggingFaceClient:
    def __init__(self, session: HubSession):
        from huggingface_hub import HfApi

        self.session = session
        self.endpoint = session.config.hf_endpoint.rstrip("/")
        token = session.config.hf_token
        # token=False: never fall back to a token stored by `hf auth login` behind the user's
        # back, and never send HF_TOKEN in clear text to an http endpoint on the network.
        send_token = bool(token) and may_carry_token(self.endpoint)
        self.api = HfApi(endpoint=self.endpoint, token=token.reveal() if send_token else False,
                         library_name="kubikai", library_version=__version__)

    def search(self, query: str, *, limit: int = 20, filter: str | None = None,
               sort: str | None = "downloads") -> list[dict[str, Any]]:
        """Model repositories matching ``query``: ``[{repo_id, downloads, likes, tags, ...}]``."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: {limit} is outside 1..1000")

        def fetch():
            models = self.api.list_models(search=query or None, filter=filter, sort=sort, limit=limit)
            return [{
                "source": "hf",
                "repo_id": info.id,
                "downloads": getattr(info, "downloads", None),
                "likes": getattr(info, "likes", None),
                "tags": list(getattr(info, "tags", None) or []),
                "pipeline_tag": getattr(info, "pipeline_tag", None),
                "library_name": getattr(info, "library_name", None),
            } for info in models]

        return self._cached(f"hf search {query!r} {filter!r} {sort!r} {limit}", fetch,
                            what=f"Hugging Face search {query!r}")

    def list_files(self, repo_id: str, *, revision: str = "main",
                   folder: str | None = None) -> list[dict[str, Any]]:
        """Files of a repository (recursively under ``folder``) with sizes and LFS SHA-256."""
        from huggingface_hub.hf_api import RepoFile

        def fetch():
            entries = self.api.list_repo_tree(repo_id, path_in_repo=folder or None,
                                              recursive=True, revision=revision)
            files = []
            for entry in entries:
                if not isinstance(entry, RepoFile):
                    continue
                sha256 = _lfs_sha256(entry.lfs)
                files.append({"path": entry.path, "size_bytes": entry.size,
                              "sha256": sha256.lower() if sha256 else None,
                              "url": self.file_url(repo_id, entry.path, revision)})
            return files

        return self._cached(f"hf tree {repo_id} {revision} {folder}", fetch,
                            what=f"Hugging Face repository {repo_id}@{revision}")

    def file_info(self, repo_id: str, path: str, *, revision: str = "main") -> dict[str, Any]:
        """One file's ``{path, size_bytes, sha256, url}``; HubNotFound if the repo lacks it."""
        folder = path.rpartition("/")[0] or None
        for entry in self.list_files(repo_id, revision=revision, folder=folder):
            if entry["path"] == path:
                return entry
        raise HubNotFound(f"Hugging Face {repo_id}@{revision}: no file {path!r}; "
                          f"`kubik hub files {repo_id}` lists what it has")

    def file_url(self, repo_id: str, path: str, revision: str = "main") -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo_id, path, revision=revision, endpoint=self.endpoint)

    # ------------------------------------------------------------ policy around HfApi calls
    def _cached(self, key: str, fetch: Callable[[], Any], what: str) -> Any:
        cache = self.session.cache
        key = f"{key} endpoint={self.endpoint} auth={bool(self.session.config.hf_token)}"
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return hit
        value = self._call(fetch, what)
        if cache is not None:
            cache.put(key, value)
        return value

    def _call(self, fetch: Callable[[], Any], what: str) -> Any:
        """Run one HfApi call politely, retry what is worth retrying, map errors to hub errors.

        Recent ``huggingface_hub`` releases already retry 429 (waiting ``Retry-After`` + 1 s),
        5xx and network errors inside the call (``utils.http_backoff``); older ones (the 0.x line
        that transformers 4 pins) do not. So we retry too, but at most twice for Hugging Face:
        enough for old releases, without multiplying the waits of new ones much.
        """
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        config = self.session.config
        attempts = max(1, min(2, config.max_attempts))
        for attempt in range(1, attempts + 1):
            self.session.wait_turn(host_of(self.endpoint))
            try:
                return fetch()
            except RepositoryNotFoundError:
                raise HubNotFound(f"{what}: repository not found (or private/gated: set HF_TOKEN "
                                  "to a token with access)") from None
            except HfHubHTTPError as exc:
                response = exc.response
                status = response.status_code if response is not None else None
                if status in (401, 403):
                    raise HubAuthError(f"{what}: access denied (HTTP {status}); set HF_TOKEN to a "
                                       "token with read access and accept the repository's "
                                       "licence if it is gated") from None
                if status == 404:
                    raise HubNotFound(f"{what}: not found (HTTP 404)") from None
                if status not in RETRY_STATUSES:
                    raise HubError(f"{what}: HTTP {status}") from None
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if status == 429 and wait is not None and wait > config.max_retry_after_s:
                    raise HubRateLimited(f"{what}: rate limited, the server asks to wait "
                                         f"{wait:.0f} s; try again later") from None
                if attempt == attempts:
                    error = HubRateLimited if status == 429 else HubUnavailable
                    raise error(f"{what}: HTTP {status} after retries; try again later") from None
                self.session.pause(wait if wait is not None else self.session.backoff(attempt))
            except _transport_errors() as exc:
                if attempt == attempts:
                    kind = "timed out" if "timeout" in type(exc).__name__.lower() else "connection failed"
                    raise HubUnavailable(f"{what}: {kind} after retries; check the network") from None
                self.session.pause(self.session.backoff(attempt))
        raise AssertionError("the loop above returns or raises")


def _lfs_sha256(lfs) -> str | None:
    """The LFS SHA-256 of a RepoFile (a dict in some huggingface_hub releases, an object in others)."""
    if not lfs:
        return None
    return lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)


def _transport_errors() -> tuple[type[Exception], ...]:
    """Network error classes of whichever HTTP library this huggingface_hub uses."""
    import importlib

    import requests

    found: list[type[Exception]] = [requests.RequestException]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
