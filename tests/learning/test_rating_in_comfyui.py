"""Rating in a real ComfyUI server (issue 16, item 2): images made by core nodes go through Kubik
Save Image, their generation ids come back in /history's ui output, ratings are posted to the
rating route, Kubik Feedback rates by id and never the image its own run made, and `kubik
insights` sees it all (the Preset Picker reading route ratings: tests/hostile/test_rating_route.py).
Hostile requests to the rating route leave the server answering and its log without a traceback.

Needs a ComfyUI checkout in COMFYUI_DIR (and its requirements importable by COMFYUI_PYTHON or
this Python); skipped otherwise. No checkpoint is needed: EmptyImage makes the pictures.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kubik_core.cli import main
from kubik_core.learning import LearningStore
from kubik_testing.comfy_server import PACK_FOLDER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
    pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the real-server rating test is skipped",
                allow_module_level=True)

ROUTE = "/kubik/learning/rating"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real ComfyUI with the pack, its learning store in a file of this test."""
    from kubik_testing.comfy_server import ComfyServer
    from kubik_testing.pack import REPO

    workdir = tmp_path_factory.mktemp("comfyui")
    store = workdir / "learning.sqlite3"
    saved = os.environ.get("KUBIK_LEARNING_URL")
    os.environ["KUBIK_LEARNING_URL"] = str(store)     # the server inherits it
    srv = ComfyServer(Path(COMFYUI_DIR), REPO, workdir)
    try:
        srv.start()
    finally:
        if saved is None:
            os.environ.pop("KUBIK_LEARNING_URL")
        else:
            os.environ["KUBIK_LEARNING_URL"] = saved
    srv.store = store
    yield srv
    srv.stop()


def _workflow(color: int, rating: int = 4) -> dict:
    """Two solid pictures saved by Kubik Save Image, rated by Kubik Feedback linked to it."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 2, "color": color}},
        "2": {"class_type": "KubikSaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kubik/rated",
                                                          "record": True}},
        "3": _feedback(["2", 0], rating),
    }


def _feedback(generation_id, rating: int) -> dict:
    return {"class_type": "KubikFeedback", "inputs": {
        "generation_id": generation_id, "rating": rating, "quality": 0, "accuracy": 0, "aesthetic": 0,
        "tags": "", "comment": "", "saved": False, "shared": False, "regenerated": False}}


def _run(server, workflow: dict) -> dict:
    entry = server.queue(workflow)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"])[:3000]
    return entry["outputs"]


def _send(server, method: str, path: str, body: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, data=body, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _pack_tracebacks(log: str) -> list[str]:
    """Tracebacks in a server log that pass through the pack. ComfyUI 0.8.0 itself logs some
    after prompts when run with an in-memory database (its SQLite connection is collected in
    the prompt worker's thread: "SQLite objects created in a thread can only be used in that
    same thread", also with core nodes only); those are not the pack's."""
    blocks = []
    for part in log.split("Traceback (most recent call last):")[1:]:
        lines = part.splitlines()[1:]
        end = next((i for i, line in enumerate(lines) if line and not line.startswith(" ")), len(lines))
        blocks.append("\n".join(lines[:end + 1]))
    return [block for block in blocks if PACK_FOLDER in block]


def test_rating_what_was_shown_in_a_real_comfyui(server, capsys):
    log_start = len(server.log())
    first = _run(server, _workflow(color=0x336699))
    seen = first["2"]["kubik_generation_ids"]                  # what the editor gets with the images
    assert len(seen) == 2 and [i["filename"] for i in first["2"]["images"]] == ["rated_00001_.png",
                                                                                "rated_00002_.png"]
    # The Feedback node ran with the image it just made: nothing recorded.
    assert first["3"]["text"][0].startswith(f"not recorded: generation {seen[0][:8]} is a new image")
    again = _run(server, _workflow(color=0x336699))             # same inputs: Save Image is cached
    assert again["2"]["kubik_generation_ids"] == seen
    assert again["3"]["text"] == [f"recorded 4/5 for generation {seen[0][:8]}"]
    changed = _run(server, _workflow(color=0x993366))           # as a new seed would: a new image
    new = changed["2"]["kubik_generation_ids"]
    assert set(new).isdisjoint(seen)
    assert changed["3"]["text"][0].startswith(f"not recorded: generation {new[0][:8]} is a new image")

    # The widget's requests (the frontend sends them under /api).
    body = {"generation_id": new[1], "rating": 5, "quality": 4, "tags": ["keeper"], "comment": "sharp"}
    status, answer = _send(server, "POST", "/api" + ROUTE, json.dumps(body).encode())
    assert status == 200 and answer["rating"]["rating"] == 5 and answer["rating"]["tags"] == ["keeper"]
    status, answer = _send(server, "POST", ROUTE, json.dumps({**body, "rating": 3}).encode())   # re-rated
    assert status == 200 and answer["rating"]["rating"] == 3
    status, answer = _send(server, "GET", f"/api{ROUTE}?generation_id={new[0]}")
    assert (status, answer) == (200, {"generation_id": new[0], "rating": None})

    # An API prompt holding only Kubik Feedback rates by the id from /history.
    alone = _run(server, {"9": _feedback(new[0], 2)})
    assert alone["9"]["text"] == [f"recorded 2/5 for generation {new[0][:8]}"]

    store = LearningStore(server.store)
    assert {row["generation_id"]: row["rating"] for row in store.rows("feedback")} == {
        seen[0]: 4, new[1]: 3, new[0]: 2}
    assert main(["insights", "--store", str(server.store), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["generations"], data["feedback"]) == (4, 3)
    assert _pack_tracebacks(server.log()[log_start:]) == []


def test_hostile_rating_requests_leave_the_real_comfyui_answering(server):
    log_start = len(server.log())
    hint = "the 32-hex-digit id Kubik Save Image recorded (its generation_id output)"
    cases = [
        ("POST", ROUTE, b'{"generation_id": "../../etc/passwd", "rating": 5}', 400, f"generation_id: {hint}"),
        ("POST", "/api" + ROUTE, b'{"generation_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400,
         "body: JSON is nested 5001 levels deep (limit 4)"),
        ("POST", ROUTE, b'{"comment": "' + b"x" * 3_000_000 + b'"}', 400,
         "body: 3000015 bytes is too large (at most 65536)"),
        ("POST", ROUTE, b'{"generation_id": "' + b"a" * 32 + b'", "rating": 5}', 404,
         "generation_id: no image with this id in the learning store; rate an image that Kubik Save "
         "Image recorded (its 'record' switch on)"),
        ("POST", ROUTE, b'{"generation_id": "' + b"a" * 32 + b'", "rating": 9}', 400,
         "rating: 9 is out of range (a whole number from 1 to 5)"),
        ("GET", ROUTE + "?generation_id=%2Fetc%2Fpasswd", None, 400, f"generation_id: {hint}"),
    ]
    for method, path, body, status, message in cases:
        assert _send(server, method, path, body) == (status, {"error": message}), path
    assert _send(server, "POST", ROUTE, b'{"rating": 5}', "text/plain")[0] == 415
    assert server.get("/system_stats")["system"] and server.process.poll() is None
    assert _pack_tracebacks(server.log()[log_start:]) == []
