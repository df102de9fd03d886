"""Optional enrichment of the rule-based analysis by a local Ollama model.

One ``POST {url}/api/chat`` with ``stream: false``, ``think: false`` and a JSON Schema as
``format`` (Ollama constrains the model's output to it). The answer is validated here again,
because a model, a proxy or an old server can still send anything. Whatever goes wrong -
nothing listening, no answer within the timeout, an HTTP error, text that is not JSON, JSON of
the wrong shape - the rule-based analysis is returned unchanged with a note saying why.

The address is a server-side request that a workflow chooses, so by default only this machine
is reached (127.0.0.0/8, ::1, localhost); the environment variable KUBIK_OLLAMA_HOSTS lists
other hosts that may be used (comma-separated names or addresses, ``*`` for any). The host is
resolved once and the checked address is the one connected to; redirects are not followed;
the answer is read within the timeout and MAX_ANSWER_BYTES, parsed with bounded depth and finite
numbers, and nothing the server sends is repeated in notes or errors.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import math
import os
import socket
import ssl
import threading
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from ..common.bounded_json import BoundedJSONError, loads as bounded_loads
from .analysis import CONCEPT_CATEGORIES, CONTENT_TYPES, STYLES, PromptAnalysis
from .errors import OllamaConfigError
from .limits import shorten
from .summary import summarize

MAX_TERMS = 20          # concepts per category kept from the model
MAX_NEGATIVE_TERMS = 40
MAX_TERM_CHARS = 80
MAX_SUMMARY_CHARS = 2000
MAX_ANSWER_BYTES = 1 << 20
MAX_URL_CHARS = 2048
MAX_MODEL_CHARS = 200
MAX_TIMEOUT = 600.0

# Hosts besides this machine that the Ollama address may name: "gpu-box.lan,10.0.0.5", or "*".
HOSTS_VARIABLE = "KUBIK_OLLAMA_HOSTS"
_LOCAL_NAMES = ("localhost", "localhost.", "ip6-localhost")


@dataclass(frozen=True)
class OllamaConfig:
    """Where the Ollama server is, which model to ask, and how long to wait (seconds)."""

    url: str = "http://127.0.0.1:11434"
    model: str = "llama3.2"
    timeout: float = 10.0


@dataclass(frozen=True)
class _Target:
    """A checked Ollama address: an IP literal, localhost (``local``: it must resolve to this
    machine) or a host KUBIK_OLLAMA_HOSTS allows; resolved once, when the request is made."""

    scheme: str
    host: str
    port: int
    path: str
    local: bool

    @property
    def shown(self) -> str:
        """The address without path or query, for notes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _allowed_hosts() -> set[str]:
    return {part.strip().lower().strip("[]") for part in os.environ.get(HOSTS_VARIABLE, "").split(",")
            if part.strip()}


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def check_url(url) -> _Target:
    """The address of ``url`` if it is well formed and allowed; OllamaConfigError otherwise.

    No network traffic: a host name other than localhost is only allowed through
    KUBIK_OLLAMA_HOSTS, and localhost is checked to be this machine when it is resolved.
    """
    if not isinstance(url, str) or not url.strip():
        raise OllamaConfigError("url", "ollama url is empty; the default is http://127.0.0.1:11434")
    url = url.strip()
    if len(url) > MAX_URL_CHARS or not url.isprintable() or " " in url:
        raise OllamaConfigError("url", "ollama url must be one address such as "
                                       "http://127.0.0.1:11434 (no spaces or control characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OllamaConfigError("url", "ollama url is not a valid address; write it like "
                                       "http://127.0.0.1:11434") from None
    if parts.scheme not in ("http", "https"):
        raise OllamaConfigError("url", "ollama url must start with http:// or https://, e.g. "
                                       "http://127.0.0.1:11434")
    if parts.username is not None or parts.password is not None:
        raise OllamaConfigError("url", "ollama url must not hold a user name or password")
    if parts.query or parts.fragment:
        raise OllamaConfigError("url", "ollama url must be the server address only, without "
                                       "? or # parts, e.g. http://127.0.0.1:11434")
    host = (parts.hostname or "").lower()
    if not host:
        raise OllamaConfigError("url", "ollama url names no host; write it like "
                                       "http://127.0.0.1:11434")
    local = host in _LOCAL_NAMES
    allowed = _allowed_hosts()
    if not (local or _is_loopback(host) or "*" in allowed or host in allowed):
        raise OllamaConfigError(
            "url", f"ollama url host {shorten(host, 60)!r} is not this machine: Kubik only talks "
                   "to an Ollama on 127.0.0.1, ::1 or localhost unless the environment variable "
                   f"{HOSTS_VARIABLE} lists the host (comma-separated names or addresses, or * "
                   "for any host) where ComfyUI or kubik runs")
    return _Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80),
                   parts.path.rstrip("/"), local)


def check_config(config: OllamaConfig) -> _Target:
    """check_url, and a usable model name and timeout; OllamaConfigError otherwise."""
    target = check_url(config.url)
    model = config.model
    if not isinstance(model, str) or not model.strip():
        raise OllamaConfigError("model", "ollama model is empty; type the name of an installed "
                                         "model (e.g. llama3.2), as `ollama list` shows it")
    if len(model) > MAX_MODEL_CHARS or not model.isprintable():
        raise OllamaConfigError("model", f"ollama model must be a name of at most "
                                         f"{MAX_MODEL_CHARS} printable characters (e.g. llama3.2)")
    timeout = config.timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise OllamaConfigError("timeout", f"ollama timeout must be a number of seconds above 0 "
                                           f"and at most {MAX_TIMEOUT:g}")
    return target


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "style": {"type": "string", "enum": [*STYLES, "unknown"]},
        "style_confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "content_type": {"type": "string", "enum": [*CONTENT_TYPES, "unknown"]},
        "concepts": {
            "type": "object",
            "properties": {name: {"type": "array", "items": {"type": "string"}}
                           for name in CONCEPT_CATEGORIES},
            "required": list(CONCEPT_CATEGORIES),
        },
        "negative": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["style", "style_confidence", "content_type", "concepts", "negative", "summary"],
}

_SYSTEM = (
    "You analyse text-to-image prompts. Answer with JSON only, following the schema. "
    "concepts: short phrases from the prompt by category (subject, style, medium, setting, "
    "lighting, camera, quality). style: the artistic style. content_type: what the image "
    "mainly shows. negative: a comma-separated negative prompt suited to the style that does "
    "not contradict the prompt. summary: one paragraph in plain English."
)


class OllamaAnswerError(ValueError):
    """The model's answer does not follow ANSWER_SCHEMA."""


def enrich(analysis: PromptAnalysis, config: OllamaConfig) -> PromptAnalysis:
    """The analysis merged with the model's answer (source "ollama"), or unchanged with a note.

    Raises OllamaConfigError (before any request) for an address, model or timeout that
    cannot be used.
    """
    target = check_config(config)
    try:
        answer = _ask(analysis, config, target)
    except _Unavailable as exc:
        return _fallback(analysis, str(exc))
    merged = replace(analysis, notes=list(analysis.notes))
    merged.style = answer["style"]
    merged.style_confidence = round(float(answer["style_confidence"]), 3)
    merged.content_type = answer["content_type"]
    merged.concepts = {}
    for category in CONCEPT_CATEGORIES:
        terms = list(analysis.concepts.get(category, []))
        limit = len(terms) + MAX_TERMS
        for term in answer["concepts"][category]:
            term = _plain(term)[:MAX_TERM_CHARS].lower()
            if len(terms) >= limit:
                break
            if term and term not in terms:
                terms.append(term)
        merged.concepts[category] = terms
    negative = [term.strip() for term in analysis.negative.split(",") if term.strip()]
    known = {term.lower() for term in negative}
    added = 0
    for term in answer["negative"].split(","):
        term = _plain(term)[:MAX_TERM_CHARS]
        if added >= MAX_NEGATIVE_TERMS:
            break
        if term and term.lower() not in known:
            negative.append(term)
            known.add(term.lower())
            added += 1
    merged.negative = ", ".join(negative)
    merged.source = "ollama"
    model = shorten(config.model, 60)
    merged.notes.append(f"enriched by Ollama model {model!r}")
    summary = _plain(answer["summary"])[:MAX_SUMMARY_CHARS]
    merged.summary = (summary + " " if summary else "") + f"Source: ollama ({model})."
    return merged


def _plain(text: str) -> str:
    """Model text as one line of printable characters (no control or bidi characters)."""
    return " ".join("".join(char for char in text if char.isprintable()).split())


class _Unavailable(Exception):
    """Why the model's answer cannot be used (the message goes into the notes)."""


def _fallback(analysis: PromptAnalysis, reason: str) -> PromptAnalysis:
    notes = [*analysis.notes, f"Ollama not used ({reason}); rule-based analysis only"]
    fallback = replace(analysis, notes=notes, source="rules")
    fallback.summary = summarize(fallback)
    return fallback


def _request_body(analysis: PromptAnalysis, config: OllamaConfig) -> bytes:
    findings = {"style": analysis.style, "content_type": analysis.content_type,
                "concepts": analysis.concepts}
    user = (f"Prompt:\n{analysis.cleaned[:4000]}\n\nRule-based findings (may be incomplete):\n"
            + json.dumps(findings, ensure_ascii=False))
    body = {
        "model": config.model,
        "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}],
        "stream": False,
        "think": False,
        "format": ANSWER_SCHEMA,
        "options": {"temperature": 0},
    }
    return json.dumps(body).encode("utf-8")


def _ask(analysis: PromptAnalysis, config: OllamaConfig, target: _Target) -> dict:
    raw = _post(target, _request_body(analysis, config), float(config.timeout))
    try:
        envelope = bounded_loads(raw, max_depth=16, max_bytes=MAX_ANSWER_BYTES)
        content = envelope["message"]["content"]
        if not isinstance(content, str):
            raise TypeError
    except (BoundedJSONError, KeyError, TypeError):
        raise _Unavailable("the answer is not an Ollama chat reply (JSON with message.content "
                           "within the size, depth and number limits)") from None
    content = content.strip()
    if content.startswith("```"):  # a model that wrapped its JSON in a Markdown fence
        content = content.strip("`").removeprefix("json").strip()
    try:
        answer = bounded_loads(content, max_depth=8, max_bytes=MAX_ANSWER_BYTES)
    except BoundedJSONError:
        raise _Unavailable("the model's message is not JSON (within the size, depth and number "
                           "limits)") from None
    try:
        validate(answer)
    except OllamaAnswerError as exc:
        raise _Unavailable(f"the model's JSON does not match the schema: {exc}") from None
    return answer


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address checked beforehand (no second lookup of the host name)."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.opened: socket.socket | None = None  # kept: the response reads on after close()

    def connect(self):
        self.sock = self.opened = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand, with the certificate checked for the host."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address
        self.opened: socket.socket | None = None

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.opened = self.tls.wrap_socket(sock, server_hostname=self.host)


def _addresses_of(target: _Target) -> list[str]:
    """The IP addresses to try, resolved once; localhost must resolve to this machine only."""
    if not target.local:
        try:
            ipaddress.ip_address(target.host.split("%", 1)[0])
            return [target.host]
        except ValueError:
            pass  # a host name allowed by KUBIK_OLLAMA_HOSTS
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _Unavailable(f"cannot resolve the host of {target.shown}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise _Unavailable(f"cannot resolve the host of {target.shown}")
    if target.local and not all(_is_loopback(address) for address in addresses):
        raise _Unavailable(f"{target.host} does not resolve to this machine here")
    return addresses


def _post(target: _Target, body: bytes, timeout: float) -> bytes:
    """POST the chat request; the answer's bytes, all within ``timeout`` seconds."""
    addresses = _addresses_of(target)
    pinned = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    current: list[http.client.HTTPConnection] = []
    expired = threading.Event()

    def stop() -> None:  # the whole exchange has one deadline, however slowly bytes arrive
        expired.set()
        # the response keeps reading from the socket after the connection lets go of it
        sock = current[-1].opened if current else None
        if sock is not None:
            try:  # a TCP shutdown ends a blocked read at once (TLS sockets included)
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    timer.start()
    try:
        for index, address in enumerate(addresses):  # localhost may be ::1 and 127.0.0.1
            current.append(pinned(target.host, target.port, address, timeout))
            try:
                current[-1].connect()
                break
            except ConnectionRefusedError:
                current[-1].close()
                if index == len(addresses) - 1:
                    raise
        connection = current[-1]
        connection.request("POST", target.path + "/api/chat", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        status = response.status
        if 300 <= status < 400:
            raise _Unavailable(f"{target.shown} answered HTTP {status}, a redirect, which is not "
                               "followed (set the Ollama address itself)")
        if status != 200:
            hint = " (is the model pulled? `ollama pull NAME`)" if status == 404 else ""
            raise _Unavailable(f"{target.shown} answered HTTP {status}{hint}")
        raw = response.read(MAX_ANSWER_BYTES + 1)
    except _Unavailable:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):
            reason = f"{target.shown} did not answer within {timeout:g} s"
        elif isinstance(exc, ConnectionRefusedError):
            reason = f"nothing listening at {target.shown} (connection refused)"
        elif isinstance(exc, ssl.SSLError):
            reason = (f"no secure connection to {target.shown} "
                      f"({shorten(str(exc.reason or 'TLS error'), 60)})")
        else:
            reason = f"cannot talk to {target.shown} (the connection failed)"
        raise _Unavailable(reason) from None
    finally:
        timer.cancel()
        for connection in current:
            connection.close()
    if expired.is_set():
        raise _Unavailable(f"{target.shown} did not answer within {timeout:g} s")
    if len(raw) > MAX_ANSWER_BYTES:
        raise _Unavailable(f"the answer is larger than {MAX_ANSWER_BYTES >> 20} MiB")
    return raw


def validate(answer) -> None:
    """Raise OllamaAnswerError unless ``answer`` follows ANSWER_SCHEMA."""
    if not isinstance(answer, dict):
        raise OllamaAnswerError("expected a JSON object")
    for key in ANSWER_SCHEMA["required"]:
        if key not in answer:
            raise OllamaAnswerError(f"missing {key!r}")
    for key in ("style", "content_type"):
        allowed = ANSWER_SCHEMA["properties"][key]["enum"]
        if answer[key] not in allowed:
            raise OllamaAnswerError(f"{key} is not one of {', '.join(allowed)}")
    confidence = answer["style_confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 <= confidence <= 1:
        raise OllamaAnswerError("style_confidence must be a number in [0, 1]")
    for key in ("negative", "summary"):
        if not isinstance(answer[key], str):
            raise OllamaAnswerError(f"{key} must be a string")
    concepts = answer["concepts"]
    if not isinstance(concepts, dict):
        raise OllamaAnswerError("concepts must be an object")
    for category in CONCEPT_CATEGORIES:
        terms = concepts.get(category)
        if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
            raise OllamaAnswerError(f"concepts.{category} must be a list of strings")
