"""URL streaming against a real HTTP server on 127.0.0.1: cache, LRU, retries, resume, failures."""
from __future__ import annotations

import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from kubik_core.classify.classmap import ClassMap
from kubik_core.classify.data import ImageSource, ManifestDataset
from kubik_core.classify.fetch import FailureLog, FetchConfig, FetchError, Fetcher
from kubik_core.classify.manifest import Sample


def _png(value: int, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# Noise does not compress: a ~50 kB file whose first half arrives in several chunks.
NOISY_PNG = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(NOISY_PNG, "PNG")
NOISY_PNG = NOISY_PNG.getvalue()


class ImageServer:
    """Routes: /img/N.png (Range-capable), /missing.png 404, /busy.png 429 twice with Retry-After,
    /down.png always 503, /cut.png cut mid-body once, /junk.png not an image, /slow.png too slow."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.ranges: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path
                n = server.hits[path] = server.hits.get(path, 0) + 1
                if self.headers.get("Range"):
                    server.ranges.append(self.headers["Range"])
                if path.startswith("/img/"):
                    body = _png(int(path[5:-4]) % 256, size=48)
                    return self._serve_range(body)
                if path == "/missing.png":
                    return self._send(404)
                if path == "/busy.png":
                    return self._send(429, headers={"Retry-After": "3"}) if n <= 2 else self._send(200, _png(7))
                if path == "/down.png":
                    return self._send(503)
                if path == "/junk.png":
                    return self._send(200, b"<html>login page</html>")
                if path == "/slow.png":
                    time.sleep(1.0)
                    return self._send(200, _png(1))
                if path == "/cut.png":
                    body = NOISY_PNG
                    if n == 1:  # promise everything, deliver half, hang up
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return None
                    return self._serve_range(body)
                return self._send(404)

            def _serve_range(self, body):
                header = self.headers.get("Range")
                if header:
                    start = int(header.split("=")[1].rstrip("-"))
                    return self._send(206, body[start:], {
                        "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
                return self._send(200, body)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # clients hanging up on /slow.png
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ImageServer()
    yield srv
    srv.close()


@pytest.fixture
def sleeps():
    return []


def _fetcher(tmp_path, sleeps, **overrides):
    options = dict(requests_per_second=1000, backoff_base=0.01, timeout=0.5, max_retries=3)
    config = FetchConfig(cache_dir=str(tmp_path / "cache"), **{**options, **overrides})
    return Fetcher(config, sleep=sleeps.append)


def test_download_then_cache_hit(server, tmp_path, sleeps):
    fetcher = _fetcher(tmp_path, sleeps)
    url = f"{server.url}/img/5.png"
    data = fetcher.get(url)
    assert Image.open(io.BytesIO(data)).size == (48, 48)
    assert fetcher.get(url) == data and server.hits["/img/5.png"] == 1
    assert fetcher.cached(url)


def test_retry_after_is_honoured_on_429(server, tmp_path, sleeps):
    data = _fetcher(tmp_path, sleeps).get(f"{server.url}/busy.png")
    assert data == _png(7) and server.hits["/busy.png"] == 3
    assert sleeps == [3.0, 3.0]


def test_5xx_backs_off_exponentially_then_fails(server, tmp_path, sleeps):
    with pytest.raises(FetchError, match="HTTP 503 after 4 attempts") as info:
        _fetcher(tmp_path, sleeps).get(f"{server.url}/down.png")
    assert not info.value.permanent and server.hits["/down.png"] == 4
    assert len(sleeps) == 3
    for k, wait in enumerate(sleeps):
        assert 0.01 * 2 ** k <= wait <= 0.01 * 2 ** k * 1.25


def test_404_fails_at_once(server, tmp_path, sleeps):
    with pytest.raises(FetchError, match="HTTP 404") as info:
        _fetcher(tmp_path, sleeps).get(f"{server.url}/missing.png")
    assert info.value.permanent and sleeps == [] and server.hits["/missing.png"] == 1


def test_timeout_is_retried_and_reported(server, tmp_path, sleeps):
    fetcher = _fetcher(tmp_path, sleeps, max_retries=1)
    fetcher.config.timeout = 0.2
    with pytest.raises(FetchError, match="timed out after 2 attempts"):
        fetcher.get(f"{server.url}/slow.png")


def test_cut_download_resumes_with_range(server, tmp_path, sleeps):
    data = _fetcher(tmp_path, sleeps).get(f"{server.url}/cut.png")
    assert data == NOISY_PNG
    assert server.hits["/cut.png"] == 2 and server.ranges and server.ranges[0] != "bytes=0-"


def test_lru_eviction_keeps_recently_used(server, tmp_path, sleeps):
    size = len(_png(1, size=48))
    fetcher = _fetcher(tmp_path, sleeps, max_bytes=int(size * 2.5))
    urls = [f"{server.url}/img/{i}.png" for i in (1, 2, 3)]
    fetcher.get(urls[0])
    fetcher.get(urls[1])
    old = time.time() - 100
    os.utime(fetcher.cache_path(urls[0]), (old, old))
    os.utime(fetcher.cache_path(urls[1]), (old + 1, old + 1))
    fetcher.get(urls[0])  # a hit makes urls[0] the most recently used
    fetcher.get(urls[2])
    assert [fetcher.cached(u) for u in urls] == [True, False, True]
    assert fetcher.cache_size() <= int(size * 2.5)


def test_dataset_records_failed_urls_and_keeps_going(server, tmp_path):
    import torchvision.transforms as T

    samples = [Sample(f"{server.url}/img/9.png", "a"), Sample(f"{server.url}/missing.png", "a"),
               Sample(f"{server.url}/junk.png", "b")]
    failures = FailureLog(tmp_path / "skipped.jsonl")
    config = FetchConfig(cache_dir=str(tmp_path / "c"), max_retries=0, timeout=2)
    dataset = ManifestDataset(samples, ClassMap(("a", "b")), T.ToTensor(), ImageSource(config), failures)
    items = [dataset[i] for i in range(3)]
    assert items[0][0].shape == (3, 48, 48) and items[1] is None and items[2] is None
    reasons = [row["reason"] for row in failures.read()]
    assert "HTTP 404" in reasons[0] and "not an image file" in reasons[1]


def test_fetch_command_reports_and_resumes(server, tmp_path, capsys):
    from kubik_core.cli import main

    manifest = tmp_path / "urls.jsonl"
    manifest.write_text("".join(json.dumps({"url": f"{server.url}{p}", "label": "x"}) + "\n"
                                for p in ("/img/1.png", "/img/2.png", "/missing.png", "/junk.png")))
    args = ["classify", "fetch", str(manifest), "--cache-dir", str(tmp_path / "cache"),
            "--retries", "0", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["downloaded"], first["failed"]) == (2, 2)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["cached"], second["downloaded"]) == (2, 0)
    assert server.hits["/img/1.png"] == 1
    assert server.hits["/missing.png"] == 2  # fetch retries recorded failures ...
    rows = FailureLog(first["failures_file"]).read()  # ... but logs each URL once
    assert sorted(row["source"].rsplit("/", 1)[1] for row in rows) == ["junk.png", "missing.png"]
