"""Hostile requests to the rating routes: POST and GET /kubik/learning/rating (issue 16).

The routes run as ComfyUI runs them: registered by ``nodes/routes.py`` on a PromptServer
stand-in shaped like ComfyUI 0.8.0's, served by a real aiohttp server, writing a real learning
store (the file $KUBIK_LEARNING_URL names, as inside ComfyUI). Every refused request gets its
exact status and one-line message, leaves the store as it was, and no answer names a server
path. A fixed-seed fuzz test throws arbitrary bodies at the schema.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kubik_core.cli import main
from kubik_core.learning import GenerationRecord, LearningStore
from kubik_testing.store_backends import POSTGRES_ENV, postgres_schema, postgres_url

sys.path.append(str(Path(__file__).resolve().parents[1] / "hub"))
from comfy_stand_ins import (PromptServerStandIn, app_for, folder_paths_module,  # noqa: E402
                             server_module)

pytestmark = pytest.mark.timeout(120)

ROUTE = "/kubik/learning/rating"
ID_HINT = "the 32-hex-digit id Kubik Save Image recorded (its generation_id output)"
FIELDS = "generation_id, rating, quality, accuracy, aesthetic, tags, comment, saved, shared, regenerated"
RATING = "a whole number from 1 to 5"
SUB = "a whole number from 0 to 5; 0 or null: not rated"
TAGS = "a list of strings or one comma-separated string"
UNKNOWN = ("generation_id: no image with this id in the learning store; rate an image that Kubik "
           "Save Image recorded (its 'record' switch on)")
STORE_LOG = "the ComfyUI log names the store and the fix"
UNRECORDED_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def comfy(monkeypatch, tmp_path, pack):
    """The pack's routes on a stand-in PromptServer, and a learning store with two generations."""
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths_module(tmp_path))
    instance = PromptServerStandIn()
    monkeypatch.setitem(sys.modules, "server", server_module(instance))
    store_path = tmp_path / "user" / "learning.sqlite3"
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(store_path))
    routes = sys.modules[f"{pack.__name__}.nodes.routes"]
    assert routes.register_routes() is True
    store = LearningStore(store_path)
    gens = [store.record_generation(GenerationRecord(prompt="a castle", family="sdxl", style="anime",
                                                     preset=preset, loras=[{"name": f"{preset}.safetensors"}]))
            for preset in ("quality", "speed")]
    return SimpleNamespace(root=tmp_path, store=store, store_path=store_path, gens=gens)


@pytest.fixture
def http(comfy):
    """Call the routes through a real aiohttp server: ``http(method, path, ...) -> (status, json)``."""
    from aiohttp.test_utils import TestClient, TestServer

    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(app_for(sys.modules["server"].PromptServer.instance)), loop=loop)
    loop.run_until_complete(client.start_server())

    async def send(method, path, **kwargs):
        response = await client.request(method, path, **kwargs)
        return response.status, await response.json()

    def call(method, path, **kwargs):
        status, answer = loop.run_until_complete(send(method, path, **kwargs))
        assert str(comfy.root) not in json.dumps(answer), answer   # never a server path
        return status, answer

    yield call
    loop.run_until_complete(client.close())
    loop.close()


def _feedback(store) -> list[dict]:
    return store.rows("feedback")


def nested(depth: int):
    value = 5
    for _ in range(depth):
        value = [value]
    return value


# ------------------------------------------------------------------ rating and reading back
def test_rate_read_back_and_re_rate(http, comfy):
    gen = comfy.gens[0]
    assert http("GET", ROUTE, params={"generation_id": gen}) == (200, {"generation_id": gen, "rating": None})
    status, answer = http("POST", ROUTE, json={
        "generation_id": gen, "rating": 4, "quality": 5, "accuracy": 0, "aesthetic": None,
        "tags": ["keeper", " ", "warm light "], "comment": "line one\nline two\tend  ", "saved": True})
    assert status == 200
    stored = answer["rating"]
    assert stored.pop("rated_at") > 0
    assert answer["generation_id"] == gen and stored == {
        "rating": 4, "quality": 5, "accuracy": None, "aesthetic": None, "tags": ["keeper", "warm light"],
        "comment": "line one\nline two\tend", "saved": True, "shared": False, "regenerated": False}
    status, again = http("GET", ROUTE, params={"generation_id": gen})
    assert status == 200 and again["rating"]["tags"] == ["keeper", "warm light"]
    status, answer = http("POST", ROUTE, json={"generation_id": gen, "rating": 2, "tags": "too dark, blurry"})
    assert status == 200 and answer["rating"]["rating"] == 2 and answer["rating"]["tags"] == ["too dark", "blurry"]
    (row,) = _feedback(comfy.store)                     # replaced, not added
    assert (row["generation_id"], row["rating"], row["quality"], row["saved"]) == (gen, 2, None, False)


def test_ratings_from_the_route_reach_the_preset_picker_and_insights(http, comfy, run_node, capsys):
    quality, speed = comfy.gens
    assert http("POST", ROUTE, json={"generation_id": quality, "rating": 1})[0] == 200
    assert http("POST", ROUTE, json={"generation_id": speed, "rating": 5})[0] == 200
    choice, summary = run_node("KubikPresetPicker", family="sdxl", method="ucb1", seed=0)
    assert summary == ("balanced for sdxl by ucb1: quality 0 good / 1 bad, balanced 0 good / 0 bad, "
                       "speed 1 good / 0 bad")   # UCB1 tries the untried preset first
    gen = comfy.store.record_generation(GenerationRecord(prompt="x", family="sdxl", preset="balanced"))
    assert http("POST", ROUTE, json={"generation_id": gen, "rating": 1})[0] == 200
    assert run_node("KubikPresetPicker", family="sdxl", method="ucb1", seed=0)[0] == "speed"
    assert http("POST", ROUTE, json={"generation_id": quality, "rating": 5})[0] == 200   # re-rated
    assert main(["insights", "--store", str(comfy.store_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["generations"], data["feedback"]) == (3, 3)
    assert data["families"]["sdxl"]["mean_rating"] == round((5 + 5 + 1) / 3, 2)
    assert [r["lora"] for r in data["best_loras_by_style"]["anime"]] == ["quality.safetensors",
                                                                          "speed.safetensors"]


# ------------------------------------------------------------------ POST bodies
POST_CORPUS = [
    # (body, status, message)
    ({}, 400, f"generation_id: required ({ID_HINT})"),
    ({"rating": 4}, 400, f"generation_id: required ({ID_HINT})"),
    ({"generation_id": "   ", "rating": 4}, 400, f"generation_id: required ({ID_HINT})"),
    ({"generation_id": 123, "rating": 4}, 400, f"generation_id: must be a string ({ID_HINT}), not a number"),
    ({"generation_id": ["0" * 32], "rating": 4}, 400, f"generation_id: must be a string ({ID_HINT}), not a list"),
    ({"generation_id": "G" * 32, "rating": 4}, 400, f"generation_id: {ID_HINT}"),
    ({"generation_id": "0" * 33, "rating": 4}, 400, "generation_id: 33 characters is too long (at most 32)"),
    ({"generation_id": "../../../etc/passwd", "rating": 4}, 400, f"generation_id: {ID_HINT}"),
    ({"generation_id": "0" * 31 + "\x00", "rating": 4}, 400,
     f"generation_id: contains control characters ({ID_HINT})"),
    ({"generation_id": UNRECORDED_ID, "rating": 4}, 404, UNKNOWN),
    ({"generation_id": "GEN"}, 400, f"generation_id: {ID_HINT}"),          # fields in schema order
    ({"generation_id": "GEN0"}, 400, f"rating: required ({RATING})"),
    ({"generation_id": "GEN0", "rating": None}, 400, f"rating: required ({RATING})"),
    ({"generation_id": "GEN0", "rating": 0}, 400, f"rating: 0 is out of range ({RATING})"),
    ({"generation_id": "GEN0", "rating": 6}, 400, f"rating: 6 is out of range ({RATING})"),
    ({"generation_id": "GEN0", "rating": -1}, 400, f"rating: -1 is out of range ({RATING})"),
    ({"generation_id": "GEN0", "rating": 2 ** 63}, 400, f"rating: {2 ** 63} is out of range ({RATING})"),
    ({"generation_id": "GEN0", "rating": "5"}, 400, f"rating: must be {RATING}, not a string"),
    ({"generation_id": "GEN0", "rating": 4.5}, 400, f"rating: must be {RATING}, not 4.5"),
    ({"generation_id": "GEN0", "rating": 4.0}, 400, f"rating: must be {RATING}, not 4.0"),
    ({"generation_id": "GEN0", "rating": True}, 400, f"rating: must be {RATING}, not a boolean"),
    ({"generation_id": "GEN0", "rating": [5]}, 400, f"rating: must be {RATING}, not a list"),
    ({"generation_id": "GEN0", "rating": {"value": 5}}, 400, f"rating: must be {RATING}, not an object"),
    ({"generation_id": "GEN0", "rating": 4, "quality": 6}, 400, f"quality: 6 is out of range ({SUB})"),
    ({"generation_id": "GEN0", "rating": 4, "accuracy": -2}, 400, f"accuracy: -2 is out of range ({SUB})"),
    ({"generation_id": "GEN0", "rating": 4, "aesthetic": "high"}, 400, f"aesthetic: must be {SUB}, not a string"),
    ({"generation_id": "GEN0", "rating": 4, "quality": False}, 400, f"quality: must be {SUB}, not a boolean"),
    ({"generation_id": "GEN0", "rating": 4, "tags": 7}, 400, f"tags: must be {TAGS}, not a number"),
    ({"generation_id": "GEN0", "rating": 4, "tags": {"a": 1}}, 400, f"tags: must be {TAGS}, not an object"),
    ({"generation_id": "GEN0", "rating": 4, "tags": True}, 400, f"tags: must be {TAGS}, not a boolean"),
    ({"generation_id": "GEN0", "rating": 4, "tags": ["ok", 1]}, 400, "tags: tag 2 must be a string, not a number"),
    ({"generation_id": "GEN0", "rating": 4, "tags": [["nested"]]}, 400, "tags: tag 1 must be a string, not a list"),
    ({"generation_id": "GEN0", "rating": 4, "tags": [None]}, 400, "tags: tag 1 must be a string, not null"),
    ({"generation_id": "GEN0", "rating": 4, "tags": ["t" * 65]}, 400, "tags: tag 1 has 65 characters (at most 64)"),
    ({"generation_id": "GEN0", "rating": 4, "tags": "ok, " + "t" * 65}, 400,
     "tags: tag 2 has 65 characters (at most 64)"),
    ({"generation_id": "GEN0", "rating": 4, "tags": ["x"] * 51}, 400, "tags: 51 tags is too many (at most 50)"),
    ({"generation_id": "GEN0", "rating": 4, "tags": ","* 50}, 400, "tags: 51 tags is too many (at most 50)"),
    ({"generation_id": "GEN0", "rating": 4, "tags": "x" * 3301}, 400,
     "tags: 3301 characters is too long (at most 50 tags of 64 characters)"),
    ({"generation_id": "GEN0", "rating": 4, "tags": ["ok", "bell\x07"]}, 400,
     "tags: tag 2 contains control characters"),
    ({"generation_id": "GEN0", "rating": 4, "tags": "new\nline"}, 400, "tags: tag 1 contains control characters"),
    ({"generation_id": "GEN0", "rating": 4, "comment": 5}, 400, "comment: must be a string, not a number"),
    ({"generation_id": "GEN0", "rating": 4, "comment": ["a"]}, 400, "comment: must be a string, not a list"),
    ({"generation_id": "GEN0", "rating": 4, "comment": "c" * 10_001}, 400,
     "comment: 10001 characters is too long (at most 10000)"),
    ({"generation_id": "GEN0", "rating": 4, "comment": "nul\x00byte"}, 400,
     "comment: contains control characters (tabs and line breaks are allowed)"),
    ({"generation_id": "GEN0", "rating": 4, "comment": "escape \x1b[31m red"}, 400,
     "comment: contains control characters (tabs and line breaks are allowed)"),
    ({"generation_id": "GEN0", "rating": 4, "saved": "yes"}, 400, "saved: must be true or false, not a string"),
    ({"generation_id": "GEN0", "rating": 4, "shared": 1}, 400, "shared: must be true or false, not a number"),
    ({"generation_id": "GEN0", "rating": 4, "regenerated": []}, 400,
     "regenerated: must be true or false, not a list"),
    ({"generation_id": "GEN0", "rating": 4, "store": "/etc/passwd"}, 400,
     f"'store': unknown field; this route takes {FIELDS}"),
    ({"generation_id": "GEN0", "rating": 4, "__proto__": {"admin": True}}, 400,
     f"'__proto__': unknown field; this route takes {FIELDS}"),
    ({"generation_id": "GEN0", "rating": 4, "x" * 500: 1}, 400,
     f"'{'x' * 40}': unknown field; this route takes {FIELDS}"),
    ({"generation_id": "GEN0", "rating": nested(10)}, 400, "body: JSON is nested 11 levels deep (limit 4)"),
]


def _with_ids(body: dict, gens: list[str]) -> dict:
    """GEN0 / GEN1 in a body stand for the store's recorded generations."""
    names = {"GEN0": gens[0], "GEN1": gens[1]}
    return {key: names.get(value, value) if isinstance(value, str) else value for key, value in body.items()}


@pytest.mark.parametrize("body, status, message", POST_CORPUS, ids=[str(i) for i in range(len(POST_CORPUS))])
def test_post_body_corpus(http, comfy, body, status, message):
    before = _feedback(comfy.store)
    assert http("POST", ROUTE, json=_with_ids(body, comfy.gens)) == (status, {"error": message})
    assert _feedback(comfy.store) == before


@pytest.mark.parametrize("kwargs, status, message", [
    ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400,
     "body: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ({"data": b"[4]", "headers": {"Content-Type": "application/json"}}, 400,
     "body: expected a JSON object, not a list"),
    ({"data": b'"rating"', "headers": {"Content-Type": "application/json"}}, 400,
     "body: expected a JSON object, not str"),
    ({"data": b'{"rating": 1e999}', "headers": {"Content-Type": "application/json"}}, 400,
     "body: number 1e999 is out of range (not a finite float)"),
    ({"data": b'{"rating": NaN}', "headers": {"Content-Type": "application/json"}}, 400,
     "body: NaN is not a JSON number (only finite numbers are accepted)"),
    ({"data": b'{"rating": ' + b"9" * 5000 + b"}", "headers": {"Content-Type": "application/json"}}, 400,
     f"body: number {'9' * 40}... has 5000 digits (too large)"),
    ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400,
     "body: JSON is not valid UTF-8 (byte 0)"),
    ({"data": b"[" * 100_000, "headers": {"Content-Type": "application/json"}}, 400,
     "body: 100000 bytes is too large (at most 65536)"),
    ({"data": b"[" * 60_000, "headers": {"Content-Type": "application/json"}}, 400,
     "body: JSON is nested 60000 levels deep (limit 4)"),
    ({"data": b'{"rating": 4}', "headers": {"Content-Type": "text/plain"}}, 415,
     "body: send JSON with Content-Type: application/json"),
    ({"data": b"rating=4", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415,
     "body: send JSON with Content-Type: application/json"),
    ({"json": {"generation_id": "x", "rating": 4}, "params": {"generation_id": "y"}}, 400,
     "query: this route takes its fields in the JSON body"),
])
def test_post_raw_body_corpus(http, comfy, kwargs, status, message):
    assert http("POST", ROUTE, **kwargs) == (status, {"error": message})
    assert _feedback(comfy.store) == []


def test_a_long_note_in_any_script_fits_and_a_larger_body_is_cut_off(http, comfy):
    note = "\u0416" * 10_000                         # 2 bytes each in UTF-8, as JSON.stringify sends it
    body = json.dumps({"generation_id": comfy.gens[0], "rating": 5, "comment": note, "tags": ["\u0416" * 64] * 50},
                      ensure_ascii=False).encode()
    status, answer = http("POST", ROUTE, data=body, headers={"Content-Type": "application/json"})
    assert status == 200 and answer["rating"]["comment"] == note and len(answer["rating"]["tags"]) == 50

    async def chunks():                              # no Content-Length: cut off while reading
        for _ in range(200):
            yield b" " * 8192

    status, answer = http("POST", ROUTE, data=chunks(), headers={"Content-Type": "application/json"})
    assert (status, answer) == (400, {"error": "body: too large (at most 65536 bytes)"})


# ------------------------------------------------------------------ GET queries
@pytest.mark.parametrize("query, status, message", [
    ("", 400, f"generation_id: required ({ID_HINT})"),
    ("?generation_id=", 400, f"generation_id: required ({ID_HINT})"),
    ("?generation_id=../../etc/passwd", 400, f"generation_id: {ID_HINT}"),
    ("?generation_id=%00" + "0" * 31, 400, f"generation_id: contains control characters ({ID_HINT})"),
    ("?generation_id=" + "0" * 5000, 400, "generation_id: 5000 characters is too long (at most 32)"),
    (f"?generation_id={UNRECORDED_ID}", 404, UNKNOWN),
    (f"?generation_id={UNRECORDED_ID}&generation_id={UNRECORDED_ID}", 400, "generation_id: given more than once"),
    (f"?generation_id={UNRECORDED_ID}&store=/etc", 400, "'store': unknown field; this route takes generation_id"),
])
def test_get_query_corpus(http, query, status, message):
    assert http("GET", ROUTE + query) == (status, {"error": message})


# ------------------------------------------------------------------ the store behind the route
def test_without_a_store_nothing_is_created(http, comfy, monkeypatch):
    missing = comfy.root / "nowhere" / "learning.sqlite3"
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(missing))
    assert http("GET", ROUTE, params={"generation_id": UNRECORDED_ID}) == (404, {"error": UNKNOWN})
    assert http("POST", ROUTE, json={"generation_id": UNRECORDED_ID, "rating": 3}) == (404, {"error": UNKNOWN})
    assert not missing.parent.exists()


def test_a_damaged_store_is_a_503_without_its_path_and_left_untouched(http, comfy, monkeypatch, caplog):
    damaged = comfy.root / "damaged.sqlite3"
    damaged.write_bytes(b"not a database " * 100)
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(damaged))
    message = f"the learning store is damaged; it was left untouched: {STORE_LOG}"
    with caplog.at_level(logging.WARNING):
        assert http("POST", ROUTE, json={"generation_id": comfy.gens[0], "rating": 3}) == (503, {"error": message})
        assert http("GET", ROUTE, params={"generation_id": comfy.gens[0]}) == (503, {"error": message})
    assert damaged.read_bytes() == b"not a database " * 100
    assert f"learning store {damaged} is not a SQLite database" in caplog.text   # the log names it


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason="needs the PostgreSQL test server")
def test_a_read_only_store_still_answers_reads(http, comfy, monkeypatch):
    """A PostgreSQL standby (read-only sessions): ratings are refused without the URL, reads work."""
    with postgres_schema() as schema:
        store = LearningStore(postgres_url(schema))
        gen = store.record_generation(GenerationRecord(prompt="a castle"))
        store.record_feedback(gen, 3)
        read_only_url = postgres_url(schema, default_transaction_read_only="on")
        monkeypatch.setenv("KUBIK_LEARNING_URL", read_only_url)
        status, answer = http("POST", ROUTE, json={"generation_id": gen, "rating": 5})
        assert (status, answer) == (
            503, {"error": f"the learning store is read-only, so nothing was recorded: {STORE_LOG}"})
        assert "127.0.0.1" not in json.dumps(answer)
        status, answer = http("GET", ROUTE, params={"generation_id": gen})
        assert status == 200 and answer["rating"]["rating"] == 3


# ------------------------------------------------------------------ fuzz
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12)
_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
_valid = {"generation_id": st.sampled_from(["GEN0", "GEN1"]),
          "rating": st.integers(1, 5),
          **{name: st.none() | st.integers(0, 5) for name in ("quality", "accuracy", "aesthetic")},
          "tags": st.lists(st.text(_PRINTABLE, max_size=64), max_size=50) | st.text(_PRINTABLE, max_size=300),
          "comment": st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\t\n\r"),
                             max_size=500),
          **{name: st.none() | st.booleans() for name in ("saved", "shared", "regenerated")}}
_hostile = {**{name: st.integers(-1, 7) | _json for name in _valid},
            "generation_id": st.sampled_from([UNRECORDED_ID, "GEN0" * 9, ""]) | _json,
            "tags": st.lists(st.text(max_size=70), max_size=55) | _json}


@st.composite
def _bodies(draw):
    """A valid body with some fields left out, made hostile, or added (unknown names)."""
    body = {}
    for name in _valid:
        choice = draw(st.sampled_from(["valid"] * 6 + ["hostile", "absent", "absent", "absent"]
                                      if name not in ("generation_id", "rating") else
                                      ["valid"] * 8 + ["hostile", "absent"]))
        if choice != "absent":
            body[name] = draw((_valid if choice == "valid" else _hostile)[name])
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=12))] = draw(_json)
    return body


@settings(derandomize=True, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_bodies())
def test_fuzzed_bodies_are_stored_in_bounds_or_refused_clearly(http, comfy, body):
    body = _with_ids(body, comfy.gens)
    before = _feedback(comfy.store)
    status, answer = http("POST", ROUTE, json=body)
    event(f"status {status}")   # --hypothesis-show-statistics: a third are stored
    if status != 200:
        message = answer["error"]
        assert status in (400, 404) and "\n" not in message and len(message) < 400
        assert message == UNKNOWN or message.split(":")[0] in FIELDS.split(", ") + ["body"] \
            or message.endswith(f"unknown field; this route takes {FIELDS}")
        assert _feedback(comfy.store) == before
        return
    stored = answer["rating"]
    assert 1 <= stored["rating"] <= 5 and body["rating"] == stored["rating"]
    assert all(stored[n] is None or 1 <= stored[n] <= 5 for n in ("quality", "accuracy", "aesthetic"))
    assert len(stored["tags"]) <= 50 and all(0 < len(t) <= 64 for t in stored["tags"])
    assert len(stored["comment"]) <= 10_000
    assert http("GET", ROUTE, params={"generation_id": body["generation_id"]}) == (200, answer)
    assert len(_feedback(comfy.store)) <= 2    # one rating per image, whatever was sent
