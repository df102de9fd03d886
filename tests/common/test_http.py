"""kubik_core.common.http: the retry and pacing policy every HTTP client of the project follows,
read from a real server on 127.0.0.1 where headers are involved."""
from __future__ import annotations

import email.utils
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from kubik_core.common.http import RETRY_STATUSES, Backoff, RateLimiter, parse_retry_after, public_url

NOW = 1_700_000_000.0   # the client's clock in the HTTP-date case


def test_rate_limiter_spaces_requests():
    now = [0.0]
    waits = []
    limiter = RateLimiter.per_second(4.0, clock=lambda: now[0], sleep=waits.append)
    for _ in range(3):
        limiter.wait()
    assert waits == [0.25, 0.5]


def test_rate_limiter_paces_each_key_on_its_own():
    now = [10.0]
    waits = []
    limiter = RateLimiter(2.0, clock=lambda: now[0], sleep=waits.append)
    limiter.wait("civitai.com")
    limiter.wait("huggingface.co")      # another host: no wait
    limiter.wait("civitai.com")
    assert waits == [2.0]
    now[0] = 20.0                        # long after: the turn has come
    limiter.wait("civitai.com")
    assert waits == [2.0]
    assert RateLimiter.per_second(0).interval == 0.0   # no limit


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == 10.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None


def test_retry_after_edge_cases():
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412600.0) == 0.0  # past
    assert parse_retry_after("-5") is None and parse_retry_after("1.5") is None


def test_backoff_doubles_up_to_its_cap_within_the_jitter():
    low = Backoff(base_s=1.0, max_s=30.0, rng=lambda: 0.0)
    high = Backoff(base_s=1.0, max_s=30.0, rng=lambda: 0.999999)
    assert [low.delay(k) for k in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert [round(high.delay(k), 3) for k in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    at_least_the_step = Backoff(base_s=0.01, max_s=60.0, jitter=(1.0, 1.25), rng=lambda: 1.0)
    assert [at_least_the_step.delay(k) for k in (1, 2, 3)] == pytest.approx([0.0125, 0.025, 0.05])
    never_over_the_cap = Backoff(base_s=50.0, max_s=60.0, jitter=(1.0, 1.25), rng=lambda: 1.0)
    assert never_over_the_cap.delay(1) == 60.0


def test_public_url_drops_query_and_fragment():
    assert (public_url("https://cdn.example/a/b.safetensors?token=SECRET&sig=1#part")
            == "https://cdn.example/a/b.safetensors")


class BusyServer:
    """Answers each GET with the next (status, headers) of ``script``, then 200 ``done``."""

    def __init__(self, script: list[tuple[int, dict]]):
        self.script = list(script)
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits += 1
                status, headers = server.script.pop(0) if server.script else (200, {})
                body = b"done" if status == 200 else b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _polite_get(url: str, backoff: Backoff, waits: list[float], attempts: int = 6) -> requests.Response:
    """The loop the project's clients run: retry what RETRY_STATUSES names, waiting what the
    server's Retry-After asks, else the backoff delay."""
    for attempt in range(1, attempts + 1):
        response = requests.get(url, timeout=5)
        if response.status_code not in RETRY_STATUSES or attempt == attempts:
            return response
        asked = parse_retry_after(response.headers.get("Retry-After"), now=NOW)
        waits.append(asked if asked is not None else backoff.delay(attempt))
    raise AssertionError("unreachable")


@pytest.mark.timeout(30)
def test_retry_after_and_backoff_from_a_real_server():
    date = email.utils.formatdate(NOW + 5, usegmt=True)          # what servers send
    server = BusyServer([(429, {"Retry-After": "3"}), (503, {"Retry-After": date}),
                         (502, {}), (408, {"Retry-After": "soon"}), (425, {})])
    try:
        waits: list[float] = []
        response = _polite_get(server.url, Backoff(base_s=1.0, max_s=30.0, rng=lambda: 1.0), waits)
    finally:
        server.close()
    assert response.status_code == 200 and response.text == "done" and server.hits == 6
    # 429: its seconds; 503: its HTTP date; 502: backoff of retry 3; 408 with an unreadable
    # header: backoff of retry 4; 425: backoff of retry 5.
    assert waits == [3.0, 5.0, 4.0, 8.0, 16.0]


@pytest.mark.timeout(30)
def test_a_final_4xx_is_not_retried():
    server = BusyServer([(404, {"Retry-After": "1"})])
    try:
        waits: list[float] = []
        response = _polite_get(server.url, Backoff(), waits)
    finally:
        server.close()
    assert response.status_code == 404 and waits == [] and server.hits == 1
    assert {404, 400, 401, 403} & RETRY_STATUSES == set()
