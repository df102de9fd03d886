"""Ollama enrichment against real HTTP servers on 127.0.0.1 that answer like Ollama - or don't."""
from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubik_core.prompting import OllamaConfig, analyze_prompt
from kubik_core.prompting.ollama import ANSWER_SCHEMA

PROMPT = "photo of a lighthouse on a cliff at sunset, 35mm"

GOOD_ANSWER = {
    "style": "cinematic",
    "style_confidence": 0.9,
    "content_type": "landscape",
    "concepts": {"subject": ["lighthouse", "Crashing Waves"], "style": ["moody"], "medium": [],
                 "setting": ["cliff", "seaside"], "lighting": ["sunset glow"], "camera": [],
                 "quality": []},
    "negative": "people, boats, blurry",
    "summary": "A moody  seaside lighthouse at sunset.",
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((self.path, body))
        mode = server.mode
        if mode == "slow":  # hold the reply until the test releases it (at most `delay` s)
            server.release.wait(server.delay)
            server.answered = True
        if mode == "http500":
            return self._send(500, json.dumps({"error": "model crashed"}).encode())
        if mode == "junk":
            return self._send(200, b"<html>definitely not json")
        content = {"good": json.dumps(GOOD_ANSWER), "slow": json.dumps(GOOD_ANSWER),
                   "prose": "Sure! The style is cinematic.",
                   "fenced": "```json\n" + json.dumps(GOOD_ANSWER) + "\n```",
                   "wrong_types": json.dumps({**GOOD_ANSWER, "style_confidence": "high",
                                              "concepts": {"subject": "lighthouse"}}),
                   "bad_enum": json.dumps({**GOOD_ANSWER, "style": "vaporwave"})}[mode]
        envelope = {"model": body.get("model"), "message": {"role": "assistant", "content": content},
                    "done": True}
        self._send(200, json.dumps(envelope).encode())

    def _send(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout test)
            pass


@contextmanager
def ollama_stand_in(mode, delay=0.0):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mode, server.delay, server.requests = mode, delay, []
    server.release, server.answered = threading.Event(), False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["good", "fenced"])
def test_good_answer_is_validated_and_merged(mode):
    with ollama_stand_in(mode) as (server, url):
        analysis = analyze_prompt(PROMPT, ollama=OllamaConfig(url, "llama3.2", 5.0))
    path, body = server.requests[0]
    assert path == "/api/chat"
    assert body["model"] == "llama3.2" and body["stream"] is False and body["think"] is False
    assert body["format"] == ANSWER_SCHEMA
    assert PROMPT in body["messages"][-1]["content"]
    assert analysis.source == "ollama"
    assert (analysis.style, analysis.content_type, analysis.style_confidence) == \
        ("cinematic", "landscape", 0.9)
    subjects = analysis.concepts["subject"]
    assert subjects[0] == "lighthouse" and "crashing waves" in subjects  # rules first, then model
    assert subjects.count("lighthouse") == 1
    assert "sunset glow" in analysis.concepts["lighting"]
    terms = [t.strip() for t in analysis.negative.split(",")]
    assert terms[-1] == "boats" and terms.count("people") == 1 and terms.count("blurry") == 1
    assert analysis.summary.startswith("A moody seaside lighthouse at sunset.")
    assert any("enriched by Ollama" in n for n in analysis.notes)


def _rules_only(url, timeout=5.0):
    analysis = analyze_prompt(PROMPT, ollama=OllamaConfig(url, "llama3.2", timeout))
    rules = analyze_prompt(PROMPT)
    assert analysis.source == "rules"
    assert (analysis.style, analysis.concepts, analysis.negative) == \
        (rules.style, rules.concepts, rules.negative)
    assert "Ollama not used" in analysis.summary
    return " ".join(analysis.notes)


def test_connection_refused_falls_back_with_the_reason():
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert "connection refused" in _rules_only(f"http://127.0.0.1:{port}")


@pytest.mark.timeout(60)  # guards against a client that waits for the held-back reply
def test_slow_server_times_out_and_falls_back():
    with ollama_stand_in("slow", delay=30.0) as (server, url):
        note = _rules_only(url, timeout=0.3)
        answered_before_the_fallback = server.answered
        server.release.set()
    assert server.requests and not answered_before_the_fallback    # gave up at its timeout, not at the reply
    assert "did not answer within 0.3 s" in note


@pytest.mark.parametrize("mode,reason", [
    ("http500", "answered HTTP 500); rule-based"),
    ("junk", "not an Ollama chat reply"),
    ("prose", "message is not JSON"),
    ("wrong_types", "does not match the schema"),
    ("bad_enum", "style is not one of photographic,"),
])
def test_garbage_answers_fall_back_with_the_reason(mode, reason):
    with ollama_stand_in(mode) as (_, url):
        notes = _rules_only(url)
    assert reason in notes
    assert "model crashed" not in notes and "vaporwave" not in notes  # nothing the server sent


def test_url_without_scheme_is_refused_without_a_request():
    from kubik_core.prompting import OllamaConfigError

    with pytest.raises(OllamaConfigError, match="must start with http:// or https://") as caught:
        analyze_prompt(PROMPT, ollama=OllamaConfig("127.0.0.1:11434", "llama3.2", 5.0))
    assert caught.value.field == "url"
