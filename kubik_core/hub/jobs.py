"""Downloads started from a web request: a bounded pool of background jobs with a readable state.

The ``/kubik/hub/download`` route answers at once with a job id; the download runs in a thread
here and reports progress through ``notify(event, data, client_id)`` (ComfyUI's websocket inside
ComfyUI). What a job shows (its state, errors, events) is meant for a web client, so:

* at most ``max_running`` downloads run at once; one more raises :class:`JobPoolFull` (HTTP 429);
* the source is shown with credential-like query values hidden (``token=***``), with a hint;
* errors and results name files and the model kind, never an absolute server path;
* events go only to the client that started the job; a job started without a client id is
  followed by polling its state.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .errors import HubError
from .sources import TOKEN_HINT, shown_source

log = logging.getLogger(__name__)

PROGRESS_EVENT = "kubik.hub.progress"
DONE_EVENT = "kubik.hub.done"
ERROR_EVENT = "kubik.hub.error"
PROGRESS_INTERVAL_S = 0.25

Notify = Callable[[str, dict, str], None]


class JobPoolFull(HubError):
    """As many downloads as allowed are already running."""


@dataclass(frozen=True)
class DownloadRequest:
    """One validated download request: where to (kind, folder, allowed extensions) and what."""
    kind: str
    folder: str
    extensions: tuple[str, ...]
    source: str
    expected_sha256: str | None = None
    file_name: str | None = None
    client_id: str | None = None


def scrub_paths(message: str, folder: str, kind: str) -> str:
    """``message`` with the target folder shown as ``<kind> folder`` and the home folder as ``~``:
    a web client learns nothing of the server's file system."""
    for path in sorted({os.path.realpath(folder), os.path.abspath(folder)}, key=len, reverse=True):
        if len(path) > 1:
            message = message.replace(path, f"the {kind} folder")
    return without_home(message)


def without_home(message: str) -> str:
    """``message`` with the server user's home folder shown as ``~``."""
    home = os.path.expanduser("~")
    return message.replace(home, "~") if len(home) > 1 else message


class DownloadJobs:
    """Background downloads with a readable state per job (the last ``keep`` finished kept)."""

    def __init__(self, notify: Notify | None = None, *, max_running: int = 3, keep: int = 50):
        self._notify = notify
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.max_running = max_running
        self._keep = keep

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job else None

    def _set(self, job_id: str, **values) -> None:
        with self._lock:
            self._jobs[job_id].update(values)
            finished = [k for k, job in self._jobs.items() if job["state"] != "running"]
            for stale in finished[: max(0, len(self._jobs) - self._keep)]:
                del self._jobs[stale]

    def start(self, request: DownloadRequest) -> str:
        """Start a download in a thread and return its job id; JobPoolFull when the pool is full."""
        shown, hidden = shown_source(request.source)
        job_id = uuid.uuid4().hex
        with self._lock:
            running = sum(1 for job in self._jobs.values() if job["state"] == "running")
            if running >= self.max_running:
                raise JobPoolFull(f"the download pool is full ({running} running, at most "
                                  f"{self.max_running}); wait for a download to finish")
            self._jobs[job_id] = {"job_id": job_id, "state": "running", "kind": request.kind,
                                  "source": shown, "done": 0, "total": None,
                                  "warnings": [TOKEN_HINT] if hidden else []}
        thread = threading.Thread(target=self._run, args=(job_id, request, shown,
                                                          [TOKEN_HINT] if hidden else []),
                                  name=f"kubik-hub-{job_id[:8]}", daemon=True)
        thread.start()
        return job_id

    def _send(self, event: str, data: dict, client_id: str | None) -> None:
        if self._notify is not None and client_id is not None:
            self._notify(event, data, client_id)

    def _run(self, job_id: str, request: DownloadRequest, shown: str, warnings: list) -> None:
        last_sent = [0.0]

        def progress(done: int, total: int | None) -> None:
            self._set(job_id, done=done, total=total)
            now = time.monotonic()
            if now - last_sent[0] >= PROGRESS_INTERVAL_S or (total and done >= total):
                last_sent[0] = now
                self._send(PROGRESS_EVENT, {"job_id": job_id, "done": done, "total": total},
                           request.client_id)

        try:
            record = self._download(request, progress)
        except Exception as exc:  # noqa: BLE001 - reported to the client, the server keeps running
            message = scrub_paths(describe_error(exc, shown), request.folder, request.kind)
            if not isinstance(exc, (HubError, ValueError)):
                log.warning("hub download job %s failed", job_id, exc_info=True)
            self._set(job_id, state="error", error=message)
            self._send(ERROR_EVENT, {"job_id": job_id, "error": message, "warnings": warnings},
                       request.client_id)
            return
        result = public_record(record)
        self._set(job_id, state="done", result=result)
        self._send(DONE_EVENT, {"job_id": job_id, "kind": request.kind, **result,
                                "warnings": warnings}, request.client_id)

    def _download(self, request: DownloadRequest, progress) -> dict:
        from .service import Hub

        with Hub() as hub:   # configured from the environment when the job starts
            return hub.download(request.source, request.folder,
                                expected_sha256=request.expected_sha256,
                                filename=request.file_name, kind=request.kind,
                                allowed_extensions=request.extensions, progress=progress)


def public_record(record: dict) -> dict:
    """A download record without absolute paths: what a web client may see."""
    shown = {key: record[key] for key in ("file_name", "sha256", "size_bytes", "status",
                                          "verified", "resumed_from", "source") if key in record}
    shown["sidecars"] = [os.path.basename(p) for p in record.get("sidecars", [])]
    return shown


def describe_error(exc: Exception, shown_source_text: str) -> str:
    """One line for a failed download; errors that do not say what they concern name the source."""
    from .errors import FileConflict, HashMismatch, SourceError, UnsafeFilename
    from .netguard import PrivateAddressRefused

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, UnsafeFilename):
        return f"file_name: {message}"
    if isinstance(exc, (HashMismatch, FileConflict, SourceError, PrivateAddressRefused)):
        return message   # these name the file or the URL themselves
    if isinstance(exc, ValueError) and message.startswith(("expected_sha256", "kind", "hash")):
        return message
    return f"source {shown_source_text[:200]!r}: {message}"
