"""Local HTTP servers on 127.0.0.1 that answer like CivitAI, the Hugging Face Hub and a CDN.

Response shapes follow the public documentation (CivitAI API v1 model / model-version
objects; Hugging Face ``/api/models``, ``/api/models/{repo}/tree/{rev}`` and ``/resolve/``).
Each server records the requests it saw (method, path, headers) so tests can check what was
sent, and can be told to misbehave: 429 with Retry-After, 5xx, a connection dropped after N
bytes, a slow answer, ignoring Range.
"""
from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


# Tokens the tests configure, so they can check that a token never reaches the wrong place.
CIVITAI_TOKEN = "civitai-SECRET-token-0123456789"
HF_TOKEN = "hf_SECRETtokenABCDEFGHIJ"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The model file the `hub_env` fixture serves as CivitAI version 456.
ENV_DATA = random.Random(7).randbytes(200_000)
ENV_SHA = sha256_hex(ENV_DATA)


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict


@dataclass
class Behaviour:
    status_queue: dict = field(default_factory=dict)   # path -> [(status, headers, body)] served first
    drop_after: dict = field(default_factory=dict)     # path -> [n bytes] (one per GET, then normal)
    delay_s: dict = field(default_factory=dict)        # path -> seconds before answering
    ignore_range: bool = False
    no_length: set = field(default_factory=set)        # paths sent without Content-Length


class StandIn:
    """A threaded HTTP server with JSON routes, files (Range-capable) and redirects."""

    def __init__(self, advertised_host: str = "127.0.0.1", bind_host: str = "127.0.0.1",
                 ssl_context=None):
        """``bind_host`` may be another loopback address (127.0.0.2) where a test tells two
        servers apart by address; ``ssl_context`` (server side) makes it an https server."""
        self.json: dict[str, object] = {}
        self.json_handlers: dict[str, object] = {}   # path prefix -> callable(path, query) -> (status, obj)
        self.files: dict[str, tuple[bytes, str]] = {}
        self.redirects: dict[str, str] = {}
        self.extra_headers: dict[str, dict] = {}
        self.seen: list[Seen] = []
        self.behaviour = Behaviour()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((bind_host, 0), _make_handler(self))
        self._server.daemon_threads = True
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        scheme = "https" if ssl_context is not None else "http"
        self.base = f"{scheme}://{advertised_host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def add_file(self, path: str, data: bytes, content_type: str = "application/octet-stream"):
        self.files[path] = (data, content_type)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(path_prefix)
                    and (method is None or s.method == method)]

    def record(self, seen: Seen):
        with self._lock:
            self.seen.append(seen)


def _make_handler(stand_in: StandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _answer(self, status, body: bytes = b"", headers=None, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.do_GET()

        def do_GET(self):
            parts = urlsplit(self.path)
            path = parts.path
            stand_in.record(Seen(self.command, path, parse_qs(parts.query), dict(self.headers)))
            behaviour = stand_in.behaviour
            delay = behaviour.delay_s.get(path)
            if delay:
                time.sleep(delay)
            queued = behaviour.status_queue.get(path)
            if queued:
                status, headers, body = queued.pop(0)
                return self._answer(status, json.dumps(body).encode(), headers)
            if path in stand_in.redirects:
                return self._answer(302, b"", {"Location": stand_in.redirects[path]})
            if path in stand_in.files:
                return self._send_file(path, *stand_in.files[path])
            if path in stand_in.json:
                return self._answer(200, json.dumps(stand_in.json[path]).encode())
            for prefix, handler in stand_in.json_handlers.items():
                if path.startswith(prefix):
                    status, obj, *headers = handler(path, parse_qs(parts.query))
                    return self._answer(status, json.dumps(obj).encode(),
                                        headers[0] if headers else None)
            self._answer(404, json.dumps({"error": "Model not found"}).encode())

        def _send_file(self, path, data: bytes, content_type: str):
            start = 0
            status = 200
            headers = {"Accept-Ranges": "bytes", **stand_in.extra_headers.get(path, {})}
            wanted = self.headers.get("Range")
            if wanted and not stand_in.behaviour.ignore_range:
                first = int(wanted.split("=", 1)[1].split("-", 1)[0])
                if first >= len(data):
                    return self._answer(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                start, status = first, 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if path in stand_in.behaviour.no_length:   # the body ends when the connection does
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command == "HEAD":
                return
            drops = stand_in.behaviour.drop_after.get(path)
            if drops:
                cut = drops.pop(0)
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            view = memoryview(body)
            for offset in range(0, len(body), 1 << 20):
                self.wfile.write(view[offset: offset + (1 << 20)])

    return Handler


# ------------------------------------------------------------------ CivitAI-shaped documents
def civitai_version(version_id: int, model_id: int, file_name: str, data: bytes, download_url: str,
                    *, base_model: str = "SDXL 1.0", trained_words=("kbk style",),
                    images=(), sha256: str | None = None, model_type: str = "LORA") -> dict:
    """A model-version object as ``GET /model-versions/{id}`` and by-hash return it."""
    sha = (sha256 or sha256_hex(data)).upper()
    return {
        "id": version_id,
        "modelId": model_id,
        "name": "v1.0",
        "createdAt": "2024-05-01T10:00:00.000Z",
        "baseModel": base_model,
        "baseModelType": "Standard",
        "trainedWords": list(trained_words),
        "nsfwLevel": 1,
        "description": "<p>test version</p>",
        "stats": {"downloadCount": 1234, "ratingCount": 10, "rating": 4.9, "thumbsUpCount": 321},
        "model": {"name": f"Test model {model_id}", "type": model_type, "nsfw": False, "poi": False},
        "files": [{
            "id": version_id * 10,
            "name": file_name,
            "sizeKB": len(data) / 1024,
            "type": "Model",
            "primary": True,
            "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
            "hashes": {"AutoV2": sha[:10], "SHA256": sha, "CRC32": "0A1B2C3D",
                       "BLAKE3": "F" * 64},
            "downloadUrl": download_url,
        }],
        "images": list(images),
        "downloadUrl": download_url,
    }


def civitai_model(model_id: int, versions: list[dict], name: str = "Test model") -> dict:
    """A model object as ``GET /models`` items and ``GET /models/{id}`` return it."""
    return {
        "id": model_id, "name": name, "description": "<p>test</p>", "type": "LORA",
        "nsfw": False, "tags": ["style", "test"], "creator": {"username": "tester"},
        "stats": {"downloadCount": 1234, "thumbsUpCount": 321, "rating": 4.9},
        "modelVersions": versions,
    }


def hf_tree_entry(path: str, data: bytes, lfs: bool = True) -> dict:
    entry = {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": path}
    if lfs:
        entry["lfs"] = {"oid": sha256_hex(data), "size": len(data), "pointerSize": 134}
    return entry
