"""The pack's HTTP routes (``/kubik/...``) on ComfyUI's server.

ComfyUI servers are often reachable from a LAN or a tunnel, so every request is hostile until
checked: each route has a small schema (type, length and form of every field; unknown fields
refused), a body is read only up to ``MAX_BODY_BYTES`` and parsed with bounded depth, and a bad
request gets a 400 whose one-line message names the field. Only then is a kubik_core service
called. Answers are JSON: the route's value, or ``{"error": "..."}`` with 400, 403, 404, 415,
429, 502 or 503; no answer reveals a server path, and an unexpected failure is a 500 with a
short message (the traceback goes to the log, the server keeps running).

Routes (also under ``/api/...``, as ComfyUI mirrors them):

* ``GET /kubik/hub/kinds`` -> ``{kinds}``: the model folders downloads may go to;
* ``GET /kubik/hub/search?hub=&query=&limit=&type=&base_model=&sort=&filter=`` -> ``{results}``;
* ``GET /kubik/hub/info?hash=`` -> CivitAI's summary of a hex hash (never a local file);
* ``POST /kubik/hub/download {kind, source, expected_sha256?, file_name?, client_id?}`` ->
  ``{job_id}``; progress comes as websocket events to ``client_id``;
* ``GET /kubik/hub/jobs/<job_id>`` -> the job's state;
* ``POST /kubik/learning/rating {generation_id, rating, quality?, accuracy?, aesthetic?, tags?,
  comment?, saved?, shared?, regenerated?}`` -> ``{generation_id, rating}``: rates the image Kubik
  Save Image recorded under that id (rating it again replaces its rating); nothing is queued;
* ``GET /kubik/learning/rating?generation_id=`` -> ``{generation_id, rating}`` (``rating`` is
  null while the image is unrated); an id the learning store never recorded is a 404.

``register_routes()`` is called by the pack's ``__init__.py``; outside ComfyUI's server it does
nothing, so the pack imports anywhere.
"""
from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from . import comfy_bridge

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_BODY_DEPTH = 4
MAX_LOOKUPS = 8          # searches and hash look-ups waiting or running at once
LOOKUP_THREADS = 4

_HEX_HASH = re.compile(r"(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{10}|[0-9a-fA-F]{12}|[0-9a-fA-F]{64})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CIVITAI_SORTS = ("Highest Rated", "Most Downloaded", "Newest")
HF_SORTS = ("downloads", "likes", "last_modified", "created_at", "trending_score")


class RequestError(ValueError):
    """A request the route refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Field:
    """One string field of a body or query: required or not, its length cap and its form."""
    name: str
    expected: str                      # said in errors: what a good value looks like
    max_length: int = 200
    required: bool = False
    pattern: re.Pattern | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> str | None:
        """The field's value (stripped) or None when absent; RequestError when it is bad."""
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            if self.required:
                raise RequestError(f"{self.name}: required ({self.expected})")
            return None
        if not isinstance(value, str):
            raise RequestError(f"{self.name}: must be a string ({self.expected}), not "
                               f"{_json_type(value)}")
        if len(value) > self.max_length:
            raise RequestError(f"{self.name}: {len(value)} characters is too long (at most "
                               f"{self.max_length})")
        if _CONTROL.search(value):
            raise RequestError(f"{self.name}: contains control characters ({self.expected})")
        if self.choices and value not in self.choices:
            raise RequestError(f"{self.name}: {value!r} is not one of {', '.join(self.choices)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise RequestError(f"{self.name}: {self.expected}")
        return value


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def validate(values: dict, fields: tuple[Field, ...]) -> dict[str, str | None]:
    """Check ``values`` against ``fields``: unknown names, types, lengths, forms -> RequestError."""
    known = {f.name for f in fields}
    for name in values:
        if name not in known:
            shown = name[:40] if isinstance(name, str) else str(name)[:40]
            raise RequestError(f"{shown!r}: unknown field; this route takes "
                               f"{', '.join(f.name for f in fields) or 'no fields'}")
    return {f.name: f.check(values.get(f.name)) for f in fields}


def query_values(query) -> dict[str, str]:
    """A request's query string as a plain dict; a name given twice is refused."""
    values: dict[str, str] = {}
    for name in query.keys():
        given = query.getall(name)
        if len(given) > 1:
            raise RequestError(f"{name[:40]}: given more than once")
        values[name] = given[0]
    return values


async def read_json_body(request, max_bytes: int = MAX_BODY_BYTES) -> dict:
    """The request body as a JSON object, read up to ``max_bytes`` and parsed with bounded depth."""
    from ..kubik_core.common import bounded_json

    if request.content_type != "application/json":
        raise RequestError("body: send JSON with Content-Type: application/json", status=415)
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestError(f"body: {request.content_length} bytes is too large (at most "
                           f"{max_bytes})")
    data = bytearray()
    async for chunk in request.content.iter_chunked(8192):
        data += chunk
        if len(data) > max_bytes:
            raise RequestError(f"body: too large (at most {max_bytes} bytes)")
    try:
        body = bounded_json.loads(bytes(data), max_depth=MAX_BODY_DEPTH, max_bytes=max_bytes)
    except bounded_json.BoundedJSONError as exc:
        raise RequestError(f"body: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise RequestError(f"body: expected a JSON object, not {_json_type(body)}")
    return body


# ---------------------------------------------------------------- schemas
CLIENT_ID = Field("client_id", "the websocket client id (letters, digits, '_', '-', '.', ':')",
                  max_length=128, pattern=re.compile(r"[A-Za-z0-9_.:-]+"))
DOWNLOAD_FIELDS = (
    Field("kind", "a model folder listed by GET /kubik/hub/kinds", max_length=64, required=True),
    Field("source", "civitai:<version id>, hf:<owner>/<repo>/<file> or an https:// URL",
          max_length=2048, required=True),
    Field("expected_sha256", "64 hex digits", max_length=64,
          pattern=re.compile(r"[0-9a-fA-F]{64}")),
    Field("file_name", "a file name such as my_lora.safetensors", max_length=255),
    CLIENT_ID,
)
SEARCH_FIELDS = (
    Field("hub", "civitai or hf", max_length=10, choices=("civitai", "hf")),
    Field("query", "search words", max_length=200),
    Field("limit", "a whole number from 1 to 100", max_length=3,
          pattern=re.compile(r"[1-9][0-9]?|100")),
    Field("type", "a CivitAI model type such as LORA or Checkpoint", max_length=40,
          pattern=re.compile(r"[A-Za-z0-9 ,]+")),
    Field("base_model", "a CivitAI base model such as SDXL 1.0", max_length=60,
          pattern=re.compile(r"[A-Za-z0-9 ._,+-]+")),
    Field("sort", "a sort order of the hub", max_length=20,
          choices=tuple(dict.fromkeys(CIVITAI_SORTS + HF_SORTS))),
    Field("filter", "a Hugging Face tag such as diffusers", max_length=100,
          pattern=re.compile(r"[A-Za-z0-9 ._:/,+-]+")),
)
INFO_FIELDS = (
    Field("hash", "a hex hash of 8, 10, 12 or 64 digits (CRC32, AutoV2, AutoV3, SHA-256); "
                  "local files are looked up with `kubik hub info FILE` on the server",
          max_length=64, required=True, pattern=_HEX_HASH),
)
JOB_ID = Field("job_id", "the 32-hex-digit id POST /kubik/hub/download returned",
               max_length=32, required=True, pattern=re.compile(r"[0-9a-f]{32}"))


def search_arguments(values: dict[str, str | None]) -> tuple[str, str, int, dict[str, str]]:
    """(hub, query, limit, filters) for Hub.search from validated search fields."""
    hub = values["hub"] or "civitai"
    only = {"civitai": ("type", "base_model"), "hf": ("filter",)}
    for other, names in only.items():
        for name in names:
            if other != hub and values[name]:
                raise RequestError(f"{name}: applies to hub={other} only")
    sorts = CIVITAI_SORTS if hub == "civitai" else HF_SORTS
    if values["sort"] and values["sort"] not in sorts:
        raise RequestError(f"sort: {values['sort']!r} is not a {hub} sort order; choose one of "
                           f"{', '.join(sorts)}")
    keys = ({"types": "type", "base_models": "base_model", "sort": "sort"} if hub == "civitai"
            else {"filter": "filter", "sort": "sort"})
    filters = {arg: values[name] for arg, name in keys.items() if values[name]}
    return hub, values["query"] or "", int(values["limit"] or 20), filters


class BoundedPool:
    """Blocking work (hub look-ups, the learning store) run off the event loop on a few threads;
    a request that would make more than ``limit`` wait or run is refused with a 429 whose
    message ``busy(count)`` says what is busy, so a flood of requests never piles up."""

    def __init__(self, threads: int, limit: int, name: str, busy: Callable[[int], str]):
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._limit = limit
        self._busy = busy
        self._in_flight = 0

    async def run(self, work: Callable, *args):
        if self._in_flight >= self._limit:
            raise RequestError(self._busy(self._in_flight), status=429)
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._in_flight -= 1


# ---------------------------------------------------------------- registration
JOBS = None   # the DownloadJobs of the registered routes (one server, one pool)


def _status(exc: Exception) -> int:
    from ..kubik_core.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited

    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, HubNotFound):
        return 404
    if isinstance(exc, HubAuthError):
        return 403
    if isinstance(exc, HubRateLimited):
        return 429
    if isinstance(exc, HubError) and not isinstance(exc, ValueError):
        return 502
    return 400


def register_routes() -> bool:
    """Add the /kubik/... routes to ComfyUI's server; False (nothing done) outside it."""
    global JOBS
    table = comfy_bridge.server_routes()
    if table is None:
        return False
    if any(getattr(route, "path", None) == "/kubik/hub/kinds" for route in table):
        return True   # already registered on this server
    from aiohttp import web

    from ..kubik_core.hub.errors import HubError
    from ..kubik_core.hub.jobs import DownloadJobs, DownloadRequest, without_home

    jobs = JOBS = DownloadJobs(notify=comfy_bridge.send_event)
    lookups = BoundedPool(LOOKUP_THREADS, MAX_LOOKUPS, "kubik-hub-lookup",
                          lambda count: f"{count} look-ups are already running; try again in a moment")

    def answer(status: int, value: dict):
        return web.json_response(value, status=status)

    def route(handler: Callable):
        """Run a handler; refusals and hub errors become JSON errors, nothing escapes."""
        async def wrapped(request):
            try:
                return answer(200, await handler(request))
            except (RequestError, HubError, ValueError) as exc:
                return answer(_status(exc), {"error": without_home(" ".join(str(exc).split()))})
            except Exception:  # noqa: BLE001 - logged; the server keeps serving
                log.exception("KubikAI route %s failed", request.path)
                return answer(500, {"error": f"internal error in {request.path[:100]}; see the "
                                             "ComfyUI log"})
        wrapped.__name__ = handler.__name__
        return wrapped

    def with_hub(action):
        from ..kubik_core.hub.service import Hub

        with Hub() as hub:
            return action(hub)

    @table.get("/kubik/hub/kinds")
    @route
    async def kinds(request):
        validate(query_values(request.query), ())
        return {"kinds": comfy_bridge.model_folder_kinds()}

    @table.get("/kubik/hub/search")
    @route
    async def search(request):
        hub, query, limit, filters = search_arguments(
            validate(query_values(request.query), SEARCH_FIELDS))
        results = await lookups.run(lambda: with_hub(lambda h: h.search(hub, query, limit=limit,
                                                                         **filters)))
        return {"results": results}

    @table.get("/kubik/hub/info")
    @route
    async def info(request):
        value = validate(query_values(request.query), INFO_FIELDS)["hash"]
        return await lookups.run(lambda: with_hub(lambda h: h.info_by_hash(value)))

    @table.post("/kubik/hub/download")
    @route
    async def download(request):
        from ..kubik_core.hub.jobs import JobPoolFull

        if request.query:
            raise RequestError("query: this route takes its fields in the JSON body")
        values = validate(await read_json_body(request), DOWNLOAD_FIELDS)
        target = comfy_bridge.model_folder(values["kind"])
        if target is None:
            raise RequestError("kind: ComfyUI's model folders are not available", status=503)
        folder, extensions = target
        try:
            job_id = jobs.start(DownloadRequest(
                kind=values["kind"], folder=folder, extensions=extensions,
                source=values["source"],
                expected_sha256=values["expected_sha256"], file_name=values["file_name"],
                client_id=values["client_id"]))
        except JobPoolFull as exc:
            raise RequestError(str(exc), status=429) from None
        return {"job_id": job_id}

    @table.get("/kubik/hub/jobs/{job_id}")
    @route
    async def job(request):
        job_id = JOB_ID.check(request.match_info["job_id"])
        state = jobs.get(job_id)
        if state is None:
            raise RequestError("job_id: no such download job (finished jobs are kept for a while "
                               "only)", status=404)
        return state

    register_learning_routes(table, route)
    return True


# ---------------------------------------------------------------- learning: rating an image
RATING_BODY_BYTES = 64 * 1024     # a 10,000-character note in any script, and 50 tags
MAX_STORE_REQUESTS = 16           # ratings waiting for or using the store at once
_NOTE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")   # control characters but \t \n \r


def _json_kind(value: Any) -> str:
    """What a JSON value is, for errors about a field whose null or text is itself wrong."""
    if value is None:
        return "null"
    return "a string" if isinstance(value, str) else _json_type(value)


@dataclass(frozen=True)
class WholeNumber:
    """A JSON integer field from ``low`` to ``high``; with ``zero_unset``, 0 (like null) means
    "not given" and is answered as None (the sub-ratings, as Kubik Feedback takes them)."""
    name: str
    low: int
    high: int
    required: bool = False
    zero_unset: bool = False

    @property
    def expected(self) -> str:
        unset = "; 0 or null: not rated" if self.zero_unset else ""
        return f"a whole number from {self.low} to {self.high}{unset}"

    def check(self, value: Any) -> int | None:
        if value is None:
            if self.required:
                raise RequestError(f"{self.name}: required ({self.expected})")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            shown = repr(value) if isinstance(value, float) else _json_kind(value)
            raise RequestError(f"{self.name}: must be {self.expected}, not {shown}")
        if not self.low <= value <= self.high:
            raise RequestError(f"{self.name}: {value} is out of range ({self.expected})")
        return None if (self.zero_unset and value == 0) else value


@dataclass(frozen=True)
class Flag:
    """A JSON boolean field; absent or null is False."""
    name: str

    def check(self, value: Any) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise RequestError(f"{self.name}: must be true or false, not {_json_kind(value)}")
        return value


@dataclass(frozen=True)
class Note:
    """Free text of at most ``max_length`` characters; tabs and line breaks are allowed."""
    name: str
    max_length: int

    def check(self, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise RequestError(f"{self.name}: must be a string, not {_json_kind(value)}")
        if len(value) > self.max_length:
            raise RequestError(f"{self.name}: {len(value)} characters is too long (at most "
                               f"{self.max_length})")
        if _NOTE_CONTROL.search(value):
            raise RequestError(f"{self.name}: contains control characters (tabs and line breaks "
                               "are allowed)")
        return value.strip()


@dataclass(frozen=True)
class Tags:
    """Tags as a list of strings or one comma-separated string; blank tags are dropped."""
    name: str
    max_tags: int
    max_length: int

    def check(self, value: Any) -> list[str]:
        expected = "a list of strings or one comma-separated string"
        if value is None:
            return []
        if isinstance(value, str):
            if len(value) > self.max_tags * (self.max_length + 2):
                raise RequestError(f"{self.name}: {len(value)} characters is too long (at most "
                                   f"{self.max_tags} tags of {self.max_length} characters)")
            items: list[Any] = value.split(",")
        elif isinstance(value, list):
            items = value
        else:
            raise RequestError(f"{self.name}: must be {expected}, not {_json_kind(value)}")
        if len(items) > self.max_tags:   # checked before looking at each (blank ones included)
            raise RequestError(f"{self.name}: {len(items)} tags is too many (at most {self.max_tags})")
        tags = []
        for number, item in enumerate(items, 1):
            if not isinstance(item, str):
                raise RequestError(f"{self.name}: tag {number} must be a string, not {_json_kind(item)}")
            item = item.strip()
            if len(item) > self.max_length:
                raise RequestError(f"{self.name}: tag {number} has {len(item)} characters (at most "
                                   f"{self.max_length})")
            if _CONTROL.search(item):
                raise RequestError(f"{self.name}: tag {number} contains control characters")
            if item:
                tags.append(item)
        return tags


def _rating_fields():
    from ..kubik_core.learning import validate as limits

    generation_id = Field("generation_id", "the 32-hex-digit id Kubik Save Image recorded (its "
                          "generation_id output)", max_length=32, required=True,
                          pattern=re.compile(r"[0-9a-f]{32}"))
    body = (generation_id,
            WholeNumber("rating", 1, 5, required=True),
            *(WholeNumber(name, 0, 5, zero_unset=True) for name in ("quality", "accuracy", "aesthetic")),
            Tags("tags", limits.MAX_TAGS, limits.MAX_TAG_CHARS),
            Note("comment", limits.MAX_COMMENT_CHARS),
            Flag("saved"), Flag("shared"), Flag("regenerated"))
    return (generation_id,), body


GENERATION_FIELDS, RATING_FIELDS = _rating_fields()
UNKNOWN_GENERATION = ("generation_id: no image with this id in the learning store; rate an image "
                      "that Kubik Save Image recorded (its 'record' switch on)")


def _in_learning_store(work: Callable[[Any], Any]) -> Any:
    """``work(store)`` on the learning store the nodes use, its problems as RequestErrors.

    Store messages name the store's file or server, so they go to the log; the answer says
    what happened and where to look. No store yet means no recorded image yet (nothing is
    created by a request).
    """
    from ..kubik_core.learning import (LearningError, StoreCorruptError, StoreReadOnlyError,
                                       UnknownGenerationError)
    from ..kubik_core.learning.location import existing_store

    try:
        store = existing_store(comfy_bridge.kubik_user_directory(create=False))
        if store is None:
            raise RequestError(UNKNOWN_GENERATION, status=404)
        return work(store)
    except UnknownGenerationError:
        raise RequestError(UNKNOWN_GENERATION, status=404) from None
    except LearningError as exc:
        log.warning("KubikAI rating: %s", " ".join(str(exc).split()))
        problem = ("is read-only, so nothing was recorded" if isinstance(exc, StoreReadOnlyError)
                   else "is damaged; it was left untouched" if isinstance(exc, StoreCorruptError)
                   else "could not be used")
        raise RequestError(f"the learning store {problem}: the ComfyUI log names the store and the "
                           "fix", status=503) from None


def register_learning_routes(table, route: Callable) -> None:
    """Add the rating routes (module docstring) to ``table``; ``route`` is register_routes' wrapper."""
    # One thread: the store takes one writer at a time anyway, and the event loop never waits
    # on the database (a locked store can take a minute to answer).
    store_pool = BoundedPool(1, MAX_STORE_REQUESTS, "kubik-learning",
                             lambda count: f"{count} ratings are already waiting for the learning "
                                           "store; try again in a moment")

    async def in_store(work: Callable[[Any], Any]):
        return await store_pool.run(_in_learning_store, work)

    @table.post("/kubik/learning/rating")
    @route
    async def rate_image(request):
        if request.query:
            raise RequestError("query: this route takes its fields in the JSON body")
        values = validate(await read_json_body(request, RATING_BODY_BYTES), RATING_FIELDS)
        generation_id = values.pop("generation_id")

        def work(store):
            store.record_feedback(generation_id, **values)
            return store.rating_of(generation_id)

        return {"generation_id": generation_id, "rating": await in_store(work)}

    @table.get("/kubik/learning/rating")
    @route
    async def image_rating(request):
        generation_id = validate(query_values(request.query), GENERATION_FIELDS)["generation_id"]
        return {"generation_id": generation_id,
                "rating": await in_store(lambda store: store.rating_of(generation_id))}
