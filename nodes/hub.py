"""Hub nodes and server routes: verified model downloads from CivitAI, Hugging Face or a URL.

The engine is ``kubik_core.hub``. The node downloads only when it runs (the user queued it);
inside ComfyUI the file lands in the model folder of the chosen kind and loaders list it after
a refresh. The ``/kubik/hub/...`` routes let the web UI search, look up hashes and start
downloads whose progress comes back as websocket events; they are registered only when the pack
runs inside ComfyUI's server.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from . import comfy_bridge

CATEGORY = "KubikAI/hub"
PROGRESS_EVENT = "kubik.hub.progress"
DONE_EVENT = "kubik.hub.done"
ERROR_EVENT = "kubik.hub.error"


def _input_error(exc: Exception, source: str) -> Exception:
    """Re-word a hub error so that it names the node input at fault."""
    from ..kubik_core.hub.errors import FileConflict, HashMismatch, SourceError, UnsafeFilename

    message = str(exc)
    if isinstance(exc, UnsafeFilename):
        return ValueError(f"file_name: {message}")
    if isinstance(exc, (HashMismatch, FileConflict)):
        return RuntimeError(message)
    if isinstance(exc, ValueError) and message.startswith(("expected_sha256", "kind")):
        return exc
    if isinstance(exc, SourceError):
        return ValueError(message)
    return RuntimeError(f"source {source!r}: {message}")


def _percent_progress(bar):
    """A download progress callback that moves a ComfyUI ProgressBar (0..100) per percent."""
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        if total:
            percent = min(100, done * 100 // total)
            if percent != last[0]:
                last[0] = percent
                bar.update_absolute(percent, 100)

    return progress


class KubikModelDownload:
    DESCRIPTION = ("Downloads a model from CivitAI (civitai:<version id> or a model page URL), "
                   "Hugging Face (hf:<owner>/<repo>/<file>) or a plain URL into a ComfyUI model "
                   "folder. The file is resumable, verified by SHA-256 before it appears, never "
                   "overwrites a different file, and gets sidecars (trigger words, base model, "
                   "preview) for the LoRA library. Runs only when queued; refresh (R) to see the "
                   "file in loaders. Tokens: CIVITAI_API_TOKEN, HF_TOKEN.")
    CATEGORY = CATEGORY
    FUNCTION = "download"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("file_name", "sha256")
    OUTPUT_TOOLTIPS = (
        "The downloaded file's name as ComfyUI's loaders list it (relative to the model folder).",
        "SHA-256 of the file on disk, verified against the hub's (or your) hash when one is known.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        kinds = comfy_bridge.model_folder_kinds()
        return {
            "required": {
                "kind": (kinds, {"default": "loras" if "loras" in kinds else kinds[0],
                                 "tooltip": "Which ComfyUI model folder to download into "
                                            "(loras, checkpoints, embeddings, controlnet, vae ...)."}),
                "source": ("STRING", {"default": "", "multiline": False,
                                      "tooltip": "civitai:<version id>, a civitai.com model URL, "
                                                 "hf:<owner>/<repo>/<path/to/file>, a huggingface.co "
                                                 "resolve URL, or any https:// URL."}),
            },
            "optional": {
                "expected_sha256": ("STRING", {"default": "",
                                               "tooltip": "Optional SHA-256 the file must have "
                                                          "(64 hex digits). CivitAI and Hugging Face "
                                                          "LFS files are verified without it."}),
                "file_name": ("STRING", {"default": "",
                                         "tooltip": "Optional name to save as (default: the hub's "
                                                    "file name, made safe)."}),
            },
        }

    def download(self, kind, source, expected_sha256="", file_name=""):
        from ..kubik_core.hub.errors import HubError
        from ..kubik_core.hub.service import Hub

        folder = comfy_bridge.model_folder(kind)
        if folder is None:
            raise RuntimeError("kind: ComfyUI's model folders are not available (the pack is not "
                               "running inside ComfyUI); outside it use `kubik hub download SOURCE "
                               "--dest FOLDER`")
        target, extensions = folder
        if not source.strip():
            raise ValueError("source: empty; give civitai:<version id>, hf:<owner>/<repo>/<file> "
                             "or an https:// URL")
        bar = comfy_bridge.progress_bar(100)
        try:
            with Hub() as hub:
                record = hub.download(source.strip(), target, expected_sha256=expected_sha256 or None,
                                      filename=file_name.strip() or None, kind=kind,
                                      allowed_extensions=extensions or None,
                                      progress=_percent_progress(bar),
                                      check_cancel=comfy_bridge.check_interrupt)
        except (HubError, ValueError) as exc:
            raise _input_error(exc, source) from None
        return (record["file_name"], record["sha256"])


NODE_CLASS_MAPPINGS = {"KubikModelDownload": KubikModelDownload}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikModelDownload": "Kubik Model Download"}


# ------------------------------------------------------------------ server routes
class DownloadJobs:
    """Downloads started from the web UI: run in threads, report over the websocket."""

    def __init__(self, keep: int = 50):
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job else None

    def _set(self, job_id: str, **values) -> None:
        with self._lock:
            self._jobs.setdefault(job_id, {"job_id": job_id}).update(values)
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)

    def start(self, kind: str, source: str, expected_sha256: str | None, file_name: str | None,
              client_id: str | None) -> str:
        """Validate the target folder now (so a bad kind is a 400), then download in a thread."""
        folder = comfy_bridge.model_folder(kind)
        if folder is None:
            raise ValueError("kind: ComfyUI's model folders are not available")
        job_id = uuid.uuid4().hex
        self._set(job_id, state="running", kind=kind, source=source, done=0, total=None)
        thread = threading.Thread(target=self._run, name=f"kubik-hub-{job_id[:8]}", daemon=True,
                                  args=(job_id, folder, kind, source, expected_sha256, file_name,
                                        client_id))
        thread.start()
        return job_id

    def _run(self, job_id, folder, kind, source, expected_sha256, file_name, client_id) -> None:
        import time

        from ..kubik_core.hub.service import Hub

        target, extensions = folder
        last_sent = [0.0]

        def progress(done: int, total: int | None) -> None:
            self._set(job_id, done=done, total=total)
            now = time.monotonic()
            if now - last_sent[0] >= 0.25 or (total and done >= total):
                last_sent[0] = now
                comfy_bridge.send_event(PROGRESS_EVENT, {"job_id": job_id, "done": done,
                                                         "total": total}, client_id)

        try:
            with Hub() as hub:
                record = hub.download(source, target, expected_sha256=expected_sha256,
                                      filename=file_name, kind=kind,
                                      allowed_extensions=extensions or None, progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported to the UI, the server keeps running
            message = str(_input_error(exc, source))
            self._set(job_id, state="error", error=message)
            comfy_bridge.send_event(ERROR_EVENT, {"job_id": job_id, "error": message}, client_id)
            return
        self._set(job_id, state="done", result=record)
        comfy_bridge.send_event(DONE_EVENT, {"job_id": job_id, "kind": kind, **record}, client_id)


JOBS = DownloadJobs()


def _error_status(exc: Exception) -> int:
    from ..kubik_core.hub.errors import HubAuthError, HubError, HubNotFound, HubRateLimited

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
    """Add the /kubik/hub/... routes to ComfyUI's server; False (nothing done) outside it."""
    routes = comfy_bridge.server_routes()
    if routes is None:
        return False
    import asyncio

    from aiohttp import web

    from ..kubik_core.hub.errors import HubError

    async def answer(work):
        try:
            value = await asyncio.get_running_loop().run_in_executor(None, work)
        except (HubError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=_error_status(exc))
        return web.json_response(value)

    def with_hub(action):
        from ..kubik_core.hub.service import Hub

        with Hub() as hub:
            return action(hub)

    @routes.get("/kubik/hub/kinds")
    async def kinds(request):
        return web.json_response({"kinds": comfy_bridge.model_folder_kinds()})

    @routes.get("/kubik/hub/search")
    async def search(request):
        q = request.query
        which = q.get("hub", "civitai")
        keys = ({"type": "types", "base_model": "base_models", "sort": "sort"} if which == "civitai"
                else {"filter": "filter", "sort": "sort"})
        filters = {name: q[key] for key, name in keys.items() if q.get(key)}

        def work():
            limit = int(q.get("limit", "20"))
            return {"results": with_hub(lambda hub: hub.search(which, q.get("query", ""),
                                                                limit=limit, **filters))}
        return await answer(work)

    @routes.get("/kubik/hub/info")
    async def info(request):
        value = request.query.get("hash", "")
        return await answer(lambda: with_hub(lambda hub: hub.info(value)) if value else _missing("hash"))

    @routes.post("/kubik/hub/download")
    async def download(request):
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "expected a JSON body"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)

        def work():
            for name in ("kind", "source"):
                if not str(body.get(name) or "").strip():
                    _missing(name)
            job_id = JOBS.start(str(body["kind"]), str(body["source"]).strip(),
                                body.get("expected_sha256") or None, body.get("file_name") or None,
                                body.get("client_id") or None)
            return {"job_id": job_id}
        return await answer(work)

    @routes.get("/kubik/hub/jobs/{job_id}")
    async def job(request):
        state = JOBS.get(request.match_info["job_id"])
        if state is None:
            return web.json_response({"error": "no such download job"}, status=404)
        return web.json_response(state)

    return True


def _missing(name: str):
    raise ValueError(f"{name}: required")


register_routes()
