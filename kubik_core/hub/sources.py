"""Understand a download source and resolve it to one remote file with its expected hash.

Accepted sources::

    civitai:<versionId>                              CivitAI model version (its primary file)
    https://civitai.com/models/<id>?modelVersionId=<versionId>
    https://civitai.com/models/<id>                  (the model's newest version)
    https://civitai.com/api/download/models/<versionId>
    hf:<owner>/<repo>[@<revision>]/<path/in/repo>    one file of a Hugging Face repository
    https://huggingface.co/<owner>/<repo>/(resolve|blob)/<revision>/<path>
    https://any.host/any/file.safetensors            a plain URL (pass expected_sha256!)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from .config import HubConfig, host_of
from .errors import SourceError

CIVITAI_HOSTS = {"civitai.com", "www.civitai.com", "civitai.red"}
HF_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
# Query parameters that carry credentials: their values are never shown or stored.
_SECRET_PARAM = re.compile(r"token|key|secret|sig|auth|pass|credential|session", re.IGNORECASE)
TOKEN_HINT = ("a credential in the source's query string was hidden from what is shown and "
              "saved; set CIVITAI_API_TOKEN or HF_TOKEN instead of pasting tokens into URLs")


def shown_source(text: str) -> tuple[str, bool]:
    """``text`` with the values of credential-like query parameters (``token=``, ``api_key=``,
    ``X-Amz-Signature=`` ...) replaced by ``***``, and whether any was hidden."""
    text = str(text)
    try:
        parts = urlsplit(text) if "?" in text else None
    except ValueError:   # not a URL at all: hide everything after the "?"
        return text.split("?", 1)[0] + "?***", False
    if parts is None or not parts.query:
        return text, False
    hidden = False
    pairs = []
    for pair in parts.query.split("&"):
        name, eq, _value = pair.partition("=")
        if eq and _SECRET_PARAM.search(unquote(name)):
            pair, hidden = f"{name}=***", True
        pairs.append(pair)
    return urlunsplit(parts._replace(query="&".join(pairs))), hidden


@dataclass
class Source:
    kind: str                        # "civitai" | "hf" | "url"
    version_id: int | None = None    # civitai
    model_id: int | None = None      # civitai, when only the model is known
    repo_id: str | None = None       # hf
    revision: str = "main"           # hf
    path: str | None = None          # hf
    url: str | None = None           # url


@dataclass
class RemoteFile:
    """One file to download, with what the hub says about it."""
    source: str                      # "civitai" | "hf" | "url"
    url: str
    filename: str                    # as the hub names it (not yet sanitised)
    sha256: str | None
    size_bytes: int | None = None
    civitai_version: dict[str, Any] | None = None   # raw version JSON (.civitai.info)
    details: dict[str, Any] = field(default_factory=dict)  # ids, repo, revision... (sidecar)


def parse_source(text: str, config: HubConfig) -> Source:
    text = (text or "").strip()
    if not text:
        raise SourceError("source: empty; give civitai:<version id>, hf:<owner>/<repo>/<file> "
                          "or an https:// URL")
    lower = text.lower()
    if lower.startswith("civitai:"):
        value = text.split(":", 1)[1].strip()
        if not re.fullmatch(r"[0-9]{1,12}", value):
            raise SourceError(f"source {text[:80]!r}: civitai: takes a numeric model version id "
                              "(the modelVersionId in a CivitAI page URL)")
        return Source("civitai", version_id=int(value))
    if lower.startswith("hf:"):
        return _parse_hf_path(text, text.split(":", 1)[1].strip().strip("/"))
    try:
        parts = urlsplit(text)
        host = host_of(text)   # reads the port: raises ValueError for a port out of range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"source {shown_source(text)[0][:80]!r}: not a civitai:, hf: or "
                          "http(s):// source")
    if host in CIVITAI_HOSTS or host == host_of(config.civitai_base):
        return _parse_civitai_url(text, parts)
    if host in HF_HOSTS or host == host_of(config.hf_endpoint):
        match = re.match(r"^/([^/]+/[^/]+)/(?:resolve|blob)/([^/]+)/(.+)$", unquote(parts.path))
        if match:
            return Source("hf", repo_id=match.group(1), revision=match.group(2), path=match.group(3))
    return Source("url", url=text)


def _parse_hf_path(text: str, value: str) -> Source:
    match = re.match(r"^([\w.-]+/[\w.-]+)(?:@([^/]+))?/(.+)$", value)
    if not match:
        raise SourceError(f"source {text[:80]!r}: expected "
                          "hf:<owner>/<repo>[@<revision>]/<path/to/file>")
    return Source("hf", repo_id=match.group(1), revision=match.group(2) or "main",
                  path=match.group(3))


def _parse_civitai_url(text: str, parts) -> Source:
    query = parse_qs(parts.query)
    version = (query.get("modelVersionId") or [None])[0]
    match = re.search(r"/api/download/models/([0-9]{1,12})(?:/|$)", parts.path)
    if match:
        return Source("civitai", version_id=int(match.group(1)))
    if version and re.fullmatch(r"[0-9]{1,12}", version):
        return Source("civitai", version_id=int(version))
    match = re.search(r"/models/([0-9]{1,12})(?:/|$)", parts.path)
    if match:
        return Source("civitai", model_id=int(match.group(1)))
    raise SourceError(f"source {shown_source(text)[0][:80]!r}: a CivitAI URL without a model or "
                      "version id")
