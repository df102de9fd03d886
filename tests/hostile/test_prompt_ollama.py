"""Hostile Ollama servers and addresses, against real HTTP(S) servers on 127.0.0.1.

Only this machine is reached unless KUBIK_OLLAMA_HOSTS allows more; redirects are not followed;
huge, deep, slow or non-finite answers fall back to the rules with a short note; nothing the
server sends (error bodies, invalid values) is repeated in notes or the summary.
"""
from __future__ import annotations

import json
import ssl
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubik_core.prompting import OllamaConfig, OllamaConfigError, analyze_prompt
from kubik_core.prompting.ollama import check_url
from kubik_testing.tls import self_signed_certificate

PROMPT = "photo of a lighthouse on a cliff at sunset"
SECRET = "SECRET-BODY-7f3a"
GOOD = {"style": "cinematic", "style_confidence": 0.9, "content_type": "landscape",
        "concepts": {"subject": ["lighthouse"], "style": [], "medium": [], "setting": ["cliff"],
                     "lighting": [], "camera": [], "quality": []},
        "negative": "people", "summary": "A lighthouse."}


def envelope(content) -> bytes:
    text = content if isinstance(content, str) else json.dumps(content)
    return json.dumps({"message": {"role": "assistant", "content": text}, "done": True}).encode()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, self.headers.get("Host")))
        self.server.answer(self)

    def send(self, status, payload: bytes, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:  # the client gave up
            pass


@contextmanager
def stand_in(answer, tls: ssl.SSLContext | None = None):
    """A server on 127.0.0.1 whose ``answer(handler)`` writes the reply; yields (server, port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.answer, server.requests = answer, []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def rules_only(url: str, timeout: float = 5.0) -> str:
    """Analyse with Ollama at ``url``; assert the rules were used; the notes and summary."""
    analysis = analyze_prompt(PROMPT, ollama=OllamaConfig(url, "llama3.2", timeout))
    assert analysis.source == "rules"
    assert analysis.style == analyze_prompt(PROMPT).style
    return " ".join(analysis.notes) + " " + analysis.summary


# ---------------------------------------------------------------- which addresses are reached
OUTSIDE = ("ollama url host {!r} is not this machine: Kubik only talks to an Ollama on 127.0.0.1, "
           "::1 or localhost unless the environment variable KUBIK_OLLAMA_HOSTS lists the host "
           "(comma-separated names or addresses, or * for any host) where ComfyUI or kubik runs")


@pytest.mark.parametrize("url,host", [
    ("http://192.0.2.10:11434", "192.0.2.10"), ("http://10.0.0.5", "10.0.0.5"),
    ("http://169.254.169.254/latest", "169.254.169.254"), ("http://0.0.0.0:11434", "0.0.0.0"),
    ("http://[fe80::1]:11434", "fe80::1"), ("https://ollama.example.com", "ollama.example.com"),
    ("http://127.0.0.1.nip.io:11434", "127.0.0.1.nip.io"), ("http://2130706433:11434", "2130706433"),
])
def test_other_hosts_are_refused_before_any_request(url, host, monkeypatch):
    monkeypatch.delenv("KUBIK_OLLAMA_HOSTS", raising=False)
    with pytest.raises(OllamaConfigError) as caught:
        analyze_prompt(PROMPT, ollama=OllamaConfig(url))
    assert (caught.value.field, str(caught.value)) == ("url", OUTSIDE.format(host))


@pytest.mark.parametrize("allowed,url", [
    ("192.0.2.10", "http://192.0.2.10:11434"), ("gpu-box.lan, 192.0.2.10", "http://GPU-box.lan"),
    ("*", "https://ollama.example.com/base"), ("[fe80::1]", "http://[fe80::1]:1"),
])
def test_kubik_ollama_hosts_allows_the_hosts_it_lists(allowed, url, monkeypatch):
    monkeypatch.setenv("KUBIK_OLLAMA_HOSTS", allowed)
    check_url(url)  # no error, and no request: the address is only checked


@pytest.mark.parametrize("url", ["http://127.8.9.10:1", "http://[::1]:1", "http://[::ffff:127.0.0.1]",
                                 "https://localhost."])
def test_every_loopback_address_is_allowed(url, monkeypatch):
    monkeypatch.delenv("KUBIK_OLLAMA_HOSTS", raising=False)
    check_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "http://localhost:{port}",
                                 "http://LOCALHOST:{port}/"])
def test_loopback_addresses_are_used(url):
    with stand_in(lambda handler: handler.send(200, envelope(GOOD))) as (server, port):
        analysis = analyze_prompt(PROMPT, ollama=OllamaConfig(url.format(port=port)))
    assert analysis.source == "ollama"
    path, host = server.requests[0]
    assert path == "/api/chat" and host.split(":")[-1] == str(port)


def test_a_path_prefix_is_kept():
    with stand_in(lambda handler: handler.send(200, envelope(GOOD))) as (server, port):
        analyze_prompt(PROMPT, ollama=OllamaConfig(f"http://127.0.0.1:{port}/ollama/"))
    assert server.requests[0][0] == "/ollama/api/chat"


def test_redirects_are_not_followed():
    with stand_in(lambda handler: handler.send(200, envelope(GOOD))) as (target, target_port):
        def redirect(handler):
            handler.send(307, b"", [("Location", f"http://127.0.0.1:{target_port}/api/chat")])
        with stand_in(redirect) as (_, port):
            notes = rules_only(f"http://127.0.0.1:{port}")
    assert target.requests == []
    assert (f"Ollama not used (http://127.0.0.1:{port} answered HTTP 307, a redirect, which is not "
            "followed (set the Ollama address itself)); rule-based analysis only") in notes


# ---------------------------------------------------------------- what the server sends
@pytest.mark.parametrize("status,reason", [
    (500, "answered HTTP 500); rule-based"),
    (404, "answered HTTP 404 (is the model pulled? `ollama pull NAME`)); rule-based"),
    (401, "answered HTTP 401); rule-based"),
])
def test_error_bodies_are_never_repeated(status, reason):
    body = json.dumps({"error": SECRET}).encode()
    with stand_in(lambda handler: handler.send(status, body)) as (_, port):
        notes = rules_only(f"http://127.0.0.1:{port}")
    assert reason in notes and SECRET not in notes


@pytest.mark.parametrize("payload,reason", [
    (b"<html>" + SECRET.encode(), "the answer is not an Ollama chat reply (JSON with "
                                  "message.content within the size, depth and number limits)"),
    (b"[" * 100_000 + b"]" * 100_000, "the answer is not an Ollama chat reply"),
    (b'{"message": {"content": 1e999}}', "the answer is not an Ollama chat reply"),
    (b'{"message": {"content": NaN}}', "the answer is not an Ollama chat reply"),
    (b'{"message": {"content": "x"}, "n": ' + b"9" * 5000 + b"}",
     "the answer is not an Ollama chat reply"),
    (b'{"message": {"content": "' + b"x" * (2 << 20) + b'"}}', "the answer is larger than 1 MiB"),
    (envelope("[" * 5000 + "]" * 5000), "the model's message is not JSON (within the size, "
                                        "depth and number limits)"),
    (envelope('{"style": "cinematic", "style_confidence": NaN}'), "the model's message is not JSON"),
    (envelope({**GOOD, "style_confidence": 1e308 * 10}), "the model's message is not JSON"),
    (envelope({**GOOD, "style": SECRET}), "the model's JSON does not match the schema: style is "
                                          "not one of photographic, cinematic"),
    (envelope({**GOOD, "concepts": {"subject": [SECRET, {"x": 1}]}}),
     "the model's JSON does not match the schema: concepts.subject must be a list of strings"),
])
def test_hostile_answers_fall_back_with_a_short_note(payload, reason):
    with stand_in(lambda handler: handler.send(200, payload)) as (_, port):
        notes = rules_only(f"http://127.0.0.1:{port}")
    assert reason in notes and SECRET not in notes
    assert len(notes) < 2000


@pytest.mark.timeout(20)
def test_a_server_that_drips_bytes_is_cut_at_the_deadline():
    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        try:
            for _ in range(200):  # 40 s, past the test's time limit unless the client quits
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    with stand_in(drip) as (_, port):
        notes = rules_only(f"http://127.0.0.1:{port}", timeout=1.0)
    assert f"http://127.0.0.1:{port} did not answer within 1 s" in notes


def test_model_text_is_cleaned_and_bounded():
    answer = {**GOOD, "summary": "A \u202elighthouse\x00 at\u2066 dusk. " + "x" * 10_000,
              "negative": ", ".join(f"term{i}\x07" for i in range(500)),
              "concepts": {**GOOD["concepts"], "subject": [f"thing {i}\u202e" for i in range(500)]}}
    with stand_in(lambda handler: handler.send(200, envelope(answer))) as (_, port):
        analysis = analyze_prompt(PROMPT, ollama=OllamaConfig(f"http://127.0.0.1:{port}"))
    assert analysis.source == "ollama"
    assert analysis.summary.startswith("A lighthouse at dusk. xxx")
    assert len(analysis.summary) < 2100
    added = analysis.negative.split(", ")[-40:]
    assert added[0] == "term0" and added[-1] == "term39" and "term40" not in analysis.negative
    rules = analyze_prompt(PROMPT).concepts["subject"]
    assert analysis.concepts["subject"] == rules + [f"thing {i}" for i in range(20)]


# ---------------------------------------------------------------- HTTPS on a pinned address
@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "localhost", "127.0.0.1")


def test_https_checks_the_certificate_for_the_host(certificate, monkeypatch):
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with stand_in(lambda handler: handler.send(200, envelope(GOOD)), tls) as (_, port):
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        notes = rules_only(f"https://localhost:{port}")
        assert f"no secure connection to https://localhost:{port} (CERTIFICATE_VERIFY_FAILED)" in notes
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust it, as a user would
        analysis = analyze_prompt(PROMPT, ollama=OllamaConfig(f"https://localhost:{port}"))
    assert analysis.source == "ollama"
