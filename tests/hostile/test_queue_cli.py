"""Hostile input to `kubik queue`: bad workflow files, flags, addresses, headers, and servers that
answer garbage or nothing. Each gets one line naming what is wrong, exit status 2, no traceback,
and no request to any address the user did not give."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubik_core.cli import main

WORKFLOW = Path(__file__).resolve().parents[1] / "comfy_client" / "tiny_txt2img.json"


class ScriptedServer:
    """An HTTP server on 127.0.0.1 answering each path with a given (status, headers, body) and
    recording every path and header set it receives."""

    def __init__(self, answers: dict):
        self.answers, self.hits = answers, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append((self.path, dict(self.headers)))
                status, headers, body = outer.answers.get(self.path.split("?")[0], (404, {}, b"not found"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(answers):
        servers.append(ScriptedServer(answers))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["queue", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") <= 1, err
    return status, err


def write(tmp_path, text: str | bytes) -> Path:
    path = tmp_path / "wf.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


BAD_FILES = [
    ("not json", b"{'prompt': 1}", "not valid JSON"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00", "JSON is not valid UTF-8"),
    ("nested", b"[" * 5000 + b"]" * 5000, "nested 5000 levels deep (limit 64)"),
    ("a list", b"[1, 2]", "not a ComfyUI workflow"),
    ("empty api", b"{}", "the workflow has no nodes"),
    ("api without class", b'{"1": {"inputs": {}}}', "not a ComfyUI workflow"),
    ("nan", b'{"1": {"class_type": "X", "inputs": {"a": NaN}}}', "NaN"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_workflow_files_are_named_before_any_server_is_asked(tmp_path, capsys, scripted, name, content, message):
    server = scripted({})
    status, err = run(capsys, write(tmp_path, content), "--server", server.url, "--out", tmp_path / "out")
    assert status == 2 and message in err and "wf.json" in err
    assert server.hits == []


def test_a_huge_workflow_file_is_refused_unread(tmp_path, capsys):
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(33 * 1024 * 1024)
    status, err = run(capsys, path, "--server", closed_port_url())
    assert status == 2 and f"{path}: 34603008 bytes is too large for a workflow (limit 32 MiB)" in err


def test_a_missing_workflow_file(tmp_path, capsys):
    status, err = run(capsys, tmp_path / "nope.json", "--server", closed_port_url())
    assert status == 2 and "nope.json: no such workflow file" in err


@pytest.mark.parametrize("flag, value, message", [
    ("--set", "seed=3", "--set 'seed=3': expected NODE.INPUT=VALUE"),
    ("--set", "5.seed", "--set '5.seed': expected NODE.INPUT=VALUE"),
    ("--set", ".seed=1", "expected NODE.INPUT=VALUE"),
    ("--sweep", "5.=1,2", "--sweep '5.=1,2': expected NODE.INPUT=VALUE"),
])
def test_bad_assignment_syntax_is_refused_before_any_server_is_asked(tmp_path, capsys, scripted, flag, value, message):
    server = scripted({})
    status, err = run(capsys, WORKFLOW, "--server", server.url, flag, value, "--out", tmp_path)
    assert status == 2 and message in err
    assert server.hits == []


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/x", "expected http://HOST:PORT"),
    ("127.0.0.1:8188", "expected http://HOST:PORT"),
    ("http://user:pw@127.0.0.1:8188", "credentials in the URL would be logged"),
    ("http://127.0.0.1:8188/?token=abc", "a server URL has no query or fragment"),
    ("http://127.0.0.1:99999", "the port is not a number from 1 to 65535"),
])
def test_bad_server_addresses(capsys, url, message):
    status, err = run(capsys, WORKFLOW, "--server", url)
    assert status == 2 and message in err
    assert "pw" not in err


def test_flags_out_of_range(capsys):
    for args, message in ((["--max-in-flight", "0"], "--max-in-flight 0: must be 1 or more"),
                          (["--repeat", "0"], "--repeat 0: must be 1 or more"),
                          (["--stall-timeout", "nan"], "--stall-timeout nan: must be a positive number")):
        status, err = run(capsys, WORKFLOW, "--server", closed_port_url(), *args)
        assert status == 2 and message in err


def test_headers_come_from_the_environment_and_stay_off_plain_http(capsys, monkeypatch):
    status, err = run(capsys, WORKFLOW, "--server", "https://comfy.example", "--header", "X-Key=secret-value")
    assert status == 2 and "expected NAME=ENV_VAR" in err
    monkeypatch.delenv("KQ_UNSET", raising=False)
    status, err = run(capsys, WORKFLOW, "--server", "https://comfy.example", "--header", "X-Key=KQ_UNSET")
    assert status == 2 and "the environment variable KQ_UNSET is not set" in err
    monkeypatch.setenv("KUBIK_COMFY_TOKEN", "tok-12345678")
    # 192.0.2.1 is a documentation address: refused before any connection is tried.
    status, err = run(capsys, WORKFLOW, "--server", "http://192.0.2.1:8188")
    assert status == 2 and "not sending Authorization over plain http to http://192.0.2.1:8188" in err
    assert "tok-12345678" not in err


def test_a_server_that_answers_nothing(tmp_path, capsys):
    url = closed_port_url()
    status, err = run(capsys, WORKFLOW, "--server", url, "--out", tmp_path)
    assert status == 2 and f"{url} did not answer /object_info" in err and "nothing was queued" in err


GARBAGE = [
    ("html", (200, {"Content-Type": "text/html"}, b"<html>login</html>"), "answered something that is not ComfyUI's JSON"),
    ("error", (500, {}, b"boom"), "/object_info answered HTTP 500"),
    ("unauthorized", (401, {}, b""), "answered HTTP 401 (the server or its proxy wants credentials"),
    ("a list", (200, {}, b"[1, 2, 3]"), "is not a ComfyUI node list"),
    ("nested", (200, {}, b"[" * 3000 + b"]" * 3000), "nested 3000 levels deep"),
]


@pytest.mark.parametrize("name, answer, message", GARBAGE, ids=[g[0] for g in GARBAGE])
def test_a_server_that_answers_garbage(tmp_path, capsys, scripted, name, answer, message):
    server = scripted({"/object_info": answer})
    status, err = run(capsys, WORKFLOW, "--server", server.url, "--out", tmp_path)
    assert status == 2 and message in err and "\x1b" not in err


def test_a_redirect_is_not_followed(tmp_path, capsys, scripted):
    elsewhere = scripted({"/object_info": (200, {}, b"{}")})
    server = scripted({"/object_info": (302, {"Location": elsewhere.url + "/object_info"}, b"")})
    status, err = run(capsys, WORKFLOW, "--server", server.url, "--out", tmp_path)
    assert status == 2 and "answered HTTP 302 (a redirect; give the final address with --server)" in err
    assert elsewhere.hits == []


def test_a_second_server_lacking_a_node_type_is_named(tmp_path, capsys, scripted):
    info = {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["tiny.safetensors"]]}}}}
    full = {name: {"input": {}} for name in ("CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage")}
    first = scripted({"/object_info": (200, {}, json.dumps({**info, **full}).encode())})
    second = scripted({"/object_info": (200, {}, json.dumps(info).encode())})
    status, err = run(capsys, WORKFLOW, "--server", first.url, "--server", second.url, "--out", tmp_path)
    assert status == 2 and f"{second.url} has no node type 'CLIPTextEncode'" in err
    assert not any(path.startswith("/prompt") for path, _ in first.hits + second.hits)


def test_a_rejection_is_shown_without_the_servers_control_characters(tmp_path, capsys, scripted):
    """A prompt the server refuses is reported once, its text cleaned of escape sequences."""
    info = {name: {"input": {}} for name in ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage",
                                             "KSampler", "VAEDecode", "SaveImage")}
    refusal = {"error": {"message": "Prompt outputs failed validation\u001b[2J"},
               "node_errors": {"1": {"class_type": "CheckpointLoaderSimple",
                                     "errors": [{"details": "ckpt_name: \u001b]0;owned\u0007 not in list"}]}}}
    server = scripted({"/object_info": (200, {}, json.dumps(info).encode()),
                       "/prompt": (400, {}, json.dumps(refusal).encode())})
    capsys.readouterr()
    status = main(["queue", str(WORKFLOW), "--server", server.url, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 1
    assert "rejected by every server" in out and "ckpt_name:" in out and "not in list" in out
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert [path for path, _ in server.hits].count("/prompt") == 1
