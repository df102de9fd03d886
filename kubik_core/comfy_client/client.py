"""One ComfyUI server over its HTTP API and websocket (aiohttp, which ComfyUI itself requires).

``ComfyClient`` does the requests and nothing more: it knows the answers' shapes and the traps
(``/history/ID`` is ``{}`` both for a running job and for an unknown id, so the caller asks
``/queue`` first), bounds every answer it reads, never follows a redirect (only the addresses the
user gave are contacted, and headers never travel elsewhere), and turns any failure into one of
two errors: :class:`ServerUnavailable` (no answer, a broken connection, an answer that is not
ComfyUI's) or :class:`JobRejected` (the server refused the prompt: node errors, missing model).
Scheduling, retries and progress live in ``pool.py``.
"""
from __future__ import annotations

import ipaddress
import re
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import quote, urlencode, urlsplit

from ..common import bounded_json
from ..common.atomic import atomic_path

MAX_JSON_BYTES = 64 * 1024 * 1024          # /object_info of a large install is a few MB
MAX_WS_MESSAGE = 16 * 1024 * 1024          # previews arrive as binary frames; text ones are small
MAX_DOWNLOAD_BYTES = 8 * 1024 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x9b]")
_LOOPBACK_NAMES = {"localhost"}


class ServerUnavailable(Exception):
    """The server did not answer, broke the connection, or answered something that is not
    ComfyUI's API. The message names the server and what happened."""


class JobRejected(Exception):
    """The server refused a prompt (``/prompt`` answered 400): node errors, a missing model."""


def clean(text, limit: int = 300) -> str:
    """Server-supplied text made safe for one terminal line: no control characters, bounded."""
    text = _CONTROL.sub(" ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize_server_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; refuses anything else with one
    line (credentials belong in headers from the environment, never in a URL that gets logged)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--server {url!r}: expected http://HOST:PORT or https://HOST[:PORT][/PATH]")
    if parts.username or parts.password:
        raise ValueError(f"--server {parts.hostname}: credentials in the URL would be logged; "
                         "pass them with --header NAME=ENV_VAR or KUBIK_COMFY_TOKEN")
    if parts.query or parts.fragment:
        raise ValueError(f"--server {url!r}: a server URL has no query or fragment")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"--server {url!r}: the port is not a number from 1 to 65535") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class QueueState:
    """The prompt ids a server is running and has waiting."""
    running: frozenset
    pending: frozenset

    def __contains__(self, prompt_id) -> bool:
        return prompt_id in self.running or prompt_id in self.pending

    def __len__(self) -> int:
        return len(self.running) + len(self.pending)


def output_files(history_entry: dict) -> list[tuple[str, dict]]:
    """(node id, {filename, subfolder, type}) for every file a finished prompt lists."""
    found = []
    outputs = history_entry.get("outputs") if isinstance(history_entry, dict) else None
    for node_id, node_output in (outputs or {}).items() if isinstance(outputs, dict) else ():
        if not isinstance(node_output, dict):
            continue
        for items in node_output.values():
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("filename"), str) and item["filename"] \
                        and isinstance(item.get("subfolder", ""), str) and isinstance(item.get("type", "output"), str):
                    found.append((str(node_id), item))
    return found


class ComfyClient:
    """Requests to one ComfyUI server: ``async with ComfyClient(url) as client: ...``.

    ``headers`` (e.g. ``{"Authorization": "Bearer ..."}``) go with every request and the
    websocket, to this server only; ``timeout`` bounds connecting and each read.
    """

    def __init__(self, url: str, headers: dict | None = None, timeout: float = 30.0, client_id: str | None = None):
        self.url = normalize_server_url(url)
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.client_id = client_id or uuid.uuid4().hex
        self._session = None

    def __repr__(self) -> str:  # never shows the headers
        return f"ComfyClient({self.url!r})"

    async def __aenter__(self) -> "ComfyClient":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self) -> None:
        import aiohttp

        if self._session is None:
            # A context made now honours SSL_CERT_FILE / SSL_CERT_DIR as they are at this point.
            connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(), limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ plumbing
    async def _request(self, method: str, path: str, *, json_body=None, params=None, limit=MAX_JSON_BYTES):
        """(status, body bytes) of one request; ServerUnavailable for anything but an answer."""
        import aiohttp

        if self._session is None:
            await self.open()
        try:
            async with self._session.request(method, self.url + path, json=json_body, params=params,
                                             allow_redirects=False) as resp:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > limit:
                        raise ServerUnavailable(f"{self.url}{path} answered more than {limit} bytes")
                return resp.status, bytes(body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ServerUnavailable(f"{self.url} did not answer {path} ({clean(_describe(exc), 160)})") from None

    async def _get_json(self, path: str, params=None):
        status, body = await self._request("GET", path, params=params)
        return self._json(path, status, body)

    def _json(self, path: str, status: int, body: bytes):
        if status != 200:
            raise ServerUnavailable(f"{self.url}{path} answered HTTP {status}{_status_hint(status)}")
        try:
            return bounded_json.loads(body, max_bytes=MAX_JSON_BYTES)
        except bounded_json.BoundedJSONError as exc:
            raise ServerUnavailable(f"{self.url}{path} answered something that is not ComfyUI's JSON "
                                    f"({clean(exc, 120)})") from None

    # ------------------------------------------------------------------ API
    async def object_info(self) -> dict:
        """Every node type the server has, with its inputs (``/object_info``)."""
        info = await self._get_json("/object_info")
        if not isinstance(info, dict) or not info or not all(isinstance(v, dict) for v in info.values()):
            raise ServerUnavailable(f"{self.url}/object_info is not a ComfyUI node list; is this a ComfyUI server?")
        return info

    async def submit(self, prompt: dict, prompt_id: str) -> None:
        """Queue ``prompt`` under our own ``prompt_id`` (so a lost answer never means a lost job:
        the id can be looked up in /queue and /history)."""
        status, body = await self._request("POST", "/prompt", json_body={
            "prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id})
        if status == 400:
            raise JobRejected(rejection_message(body))
        answer = self._json("/prompt", status, body)
        if not isinstance(answer, dict) or answer.get("prompt_id") != prompt_id:
            raise ServerUnavailable(f"{self.url}/prompt answered without the prompt id it was given "
                                    "(a ComfyUI older than 0.3.40, or not ComfyUI?)")

    async def queue(self) -> QueueState:
        """What the server runs and has waiting (``/queue``)."""
        answer = await self._get_json("/queue")
        ids = {}
        for part in ("queue_running", "queue_pending"):
            items = answer.get(part) if isinstance(answer, dict) else None
            if not isinstance(items, list):
                raise ServerUnavailable(f"{self.url}/queue is not ComfyUI's queue (no {part} list)")
            ids[part] = frozenset(str(item[1]) for item in items if isinstance(item, list) and len(item) > 1)
        return QueueState(ids["queue_running"], ids["queue_pending"])

    async def history(self, prompt_id: str) -> dict | None:
        """The finished prompt's entry, or None: ComfyUI answers ``{}`` both while the prompt runs
        or waits and for an id it never saw (ask :meth:`queue` to tell them apart)."""
        answer = await self._get_json(f"/history/{quote(prompt_id, safe='')}")
        if not isinstance(answer, dict):
            raise ServerUnavailable(f"{self.url}/history is not ComfyUI's history")
        entry = answer.get(prompt_id)
        if entry is None:
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("status", {}), dict):
            raise ServerUnavailable(f"{self.url}/history/{prompt_id} is not a ComfyUI history entry")
        return entry

    async def download(self, ref: dict, dest: Path, limit: int = MAX_DOWNLOAD_BYTES) -> int:
        """Fetch one output file (``/view``) to ``dest`` atomically; returns its size."""
        import aiohttp

        if self._session is None:
            await self.open()
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        size = 0
        try:
            async with self._session.get(f"{self.url}/view?{urlencode(params)}", allow_redirects=False) as resp:
                if resp.status != 200:
                    raise ServerUnavailable(f"{self.url}/view answered HTTP {resp.status} for "
                                            f"{clean(ref['filename'], 80)!r}{_status_hint(resp.status)}")
                with atomic_path(dest) as tmp, open(tmp, "wb") as handle:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        size += len(chunk)
                        if size > limit:
                            raise ServerUnavailable(f"{self.url}/view sent more than {limit} bytes for "
                                                    f"{clean(ref['filename'], 80)!r}")
                        handle.write(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ServerUnavailable(f"{self.url} broke off the download of {clean(ref['filename'], 80)!r} "
                                    f"({clean(_describe(exc), 120)})") from None
        return size

    async def events(self, heartbeat: float = 10.0) -> AsyncIterator[dict]:
        """The websocket's JSON messages (``{"type", "data"}``) until it closes; binary preview
        frames are skipped. A ping every ``heartbeat`` seconds that gets no answer closes a socket
        that went silent, so the caller can reconnect (and poll meanwhile)."""
        import aiohttp

        if self._session is None:
            await self.open()
        scheme, rest = self.url.split("://", 1)
        ws_url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={self.client_id}"
        try:
            # A stalled peer never answers the closing handshake either: wait for it briefly.
            async with self._session.ws_connect(ws_url, heartbeat=heartbeat, max_msg_size=MAX_WS_MESSAGE,
                                                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                                                autoclose=True, autoping=True) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
                        continue
                    try:
                        message = bounded_json.loads(msg.data, max_bytes=MAX_WS_MESSAGE)
                    except bounded_json.BoundedJSONError:
                        continue
                    if isinstance(message, dict) and isinstance(message.get("type"), str):
                        data = message.get("data")
                        yield {"type": message["type"], "data": data if isinstance(data, dict) else {}}
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ServerUnavailable(f"{self.url} websocket: {clean(_describe(exc), 160)}") from None


def rejection_message(body: bytes) -> str:
    """One line from ComfyUI's 400 answer: the error and each node's first problem."""
    try:
        answer = bounded_json.loads(body, max_bytes=MAX_JSON_BYTES)
    except bounded_json.BoundedJSONError:
        return f"the server refused the prompt ({clean(body[:200].decode('utf-8', 'replace'), 200)})"
    if not isinstance(answer, dict):
        return "the server refused the prompt"
    error = answer.get("error")
    parts = [clean(error.get("message") if isinstance(error, dict) else error or "prompt refused", 120)]
    node_errors = answer.get("node_errors")
    for node_id, info in list(node_errors.items())[:4] if isinstance(node_errors, dict) else ():
        if not isinstance(info, dict):
            continue
        first = (info.get("errors") or [{}])[0]
        if isinstance(first, dict):
            detail = first.get("details") or first.get("message") or ""
            parts.append(f"node {clean(node_id, 20)} ({clean(info.get('class_type', '?'), 40)}): {clean(detail, 160)}")
    return "; ".join(p for p in parts if p)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return " (the server or its proxy wants credentials: --header NAME=ENV_VAR or KUBIK_COMFY_TOKEN)"
    if status in (301, 302, 303, 307, 308):
        return " (a redirect; give the final address with --server)"
    return ""
