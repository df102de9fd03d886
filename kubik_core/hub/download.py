"""Resumable, verified downloads into a model folder.

The bytes go to ``<name>.part`` next to the final file. An interrupted download (dropped
connection, cancelled node, crashed process) leaves the ``.part`` file; the next attempt asks
for the rest with ``Range: bytes=<size>-`` and appends when the server answers 206. The SHA-256
is computed while writing (plus one read of the existing part when resuming); only a file with
the expected hash is renamed to its final name with ``os.replace``, so a model folder never
shows a partial or corrupt file. A hash mismatch deletes the ``.part`` file and says so.
An existing file under the final name is never overwritten: same hash -> nothing to do,
different hash -> :class:`FileConflict`.

Limits (from :class:`~.config.HubConfig`): a file larger than ``max_download_bytes`` is refused
(from its announced size, and while streaming when none is announced); a download stops when the
folder would keep less than ``min_free_bytes`` free; and one download may take at most
``download_deadline_s`` in all (retries included), after which its ``.part`` waits for a rerun.
"""
from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from ..common.http import public_url
from .errors import FileConflict, HashMismatch, HubAuthError, HubError, HubUnavailable
from .filenames import path_inside, safe_filename
from .http import HubSession

CHUNK_SIZE = 1 << 20
ProgressCallback = Callable[[int, "int | None"], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)$")
_STREAM_ERRORS = (requests.ConnectionError, requests.Timeout,
                  requests.exceptions.ChunkedEncodingError)


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int
    status: str          # "downloaded" or "already_present"
    resumed_from: int    # bytes that were already in the .part file (0 if none)
    attempts: int        # HTTP GETs used for the body (1 when nothing went wrong)


def normalize_sha256(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise ValueError(f"expected_sha256: {value[:80]!r} is not 64 hex digits")
    return value


def sha256_file(path: Path, chunk_size: int = 4 * CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def download_file(session: HubSession, url: str, folder: Path | str, filename: str, *,
                  expected_sha256: str | None = None, progress: ProgressCallback | None = None,
                  check_cancel: Callable[[], None] | None = None,
                  chunk_size: int = CHUNK_SIZE) -> DownloadResult:
    """Download ``url`` to ``folder/filename`` (sanitised), resuming and verifying."""
    from filelock import FileLock, Timeout

    expected = normalize_sha256(expected_sha256)
    folder = Path(folder)
    name = safe_filename(filename)
    prepare_folder(folder)
    final = path_inside(folder, name)
    part = final.with_name(name + ".part")
    lock = FileLock(str(final.with_name(name + ".lock")), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise HubError(f"{name}: another download of this file is running; wait for it") from None
    try:
        if final.exists() and not final.is_file():
            raise FileConflict(f"{name}: a folder or special file with this name is already in "
                               f"{folder}; pick another file name")
        if final.exists() and expected is not None:
            return _existing(final, expected)
        stale_part_possible = part.exists()
        deadline = time.monotonic() + session.config.download_deadline_s
        try:
            result = _fetch(session, url, part, expected, progress, check_cancel, chunk_size,
                            deadline)
        except HashMismatch:
            if not stale_part_possible:
                raise
            # The .part may be left from another file of the same name: it was deleted with
            # the mismatch, so one download from scratch tells whether the hub copy is bad.
            result = _fetch(session, url, part, expected, progress, check_cancel, chunk_size,
                            deadline)
        if final.exists():  # only reached without an expected hash (or a file that appeared meanwhile)
            existing = sha256_file(final)
            part.unlink(missing_ok=True)
            if existing != result.sha256:
                raise FileConflict(_conflict_message(final, existing, result.sha256))
            result.status = "already_present"
        else:
            os.replace(part, final)
        result.path = final
        return result
    finally:
        if final.exists() or not part.exists():  # keep the lock file only beside a .part file
            Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def check_folder(folder: Path) -> None:
    """HubError (one line) when ``folder`` is a file or could not be created or written; creates
    nothing, so that a download refused later leaves no empty folder behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HubError(f"{folder}: is a file, not a folder; give the folder to download into")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise HubError(f"{folder}: cannot be created, {existing} is a file; give another folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise HubError(f"{folder}: not writable (permission denied); give a folder you can "
                       "write to")


def prepare_folder(folder: Path) -> None:
    """Create the target folder if needed; HubError with one clear line when it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HubError(f"{folder}: is a file, not a folder; give the folder to download "
                       "into") from None
    except OSError as exc:
        raise HubError(f"{folder}: cannot create this folder ({exc.strerror or type(exc).__name__})"
                       "; give a folder you can write to") from None
    if not folder.is_dir():
        raise HubError(f"{folder}: is a file, not a folder; give the folder to download into")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise HubError(f"{folder}: not writable (permission denied); give a folder you can "
                       "write to")


def _existing(final: Path, expected: str) -> DownloadResult:
    existing = sha256_file(final)
    if existing != expected:
        raise FileConflict(f"{final.name} is already in {final.parent}, but it is not the file "
                           f"asked for: it has SHA-256 {existing}, the file asked for has "
                           f"{expected}; nothing was downloaded or overwritten: check the "
                           "expected hash, or rename or delete the present file")
    return DownloadResult(final, existing, final.stat().st_size, "already_present", 0, 0)


def _conflict_message(final: Path, existing: str, wanted: str) -> str:
    return (f"{final.name}: a different file with this name is already in {final.parent} "
            f"(sha256 {existing[:12]}..., the download is {wanted[:12]}...); nothing was "
            "overwritten: rename or delete the existing file, or pick another file name")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min" if seconds < 3600 else f"{seconds / 3600:g} h"


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{int(n)} bytes"


def _refuse_too_large(session: HubSession, url: str, part: Path, total: int | None) -> None:
    part.unlink(missing_ok=True)
    size = f"is {_size(total)}" if total is not None else "is larger than that"
    raise HubError(f"{public_url(url)}: one download may write at most "
                   f"{_size(session.config.max_download_bytes)} (KUBIK_HUB_MAX_DOWNLOAD_GB) and "
                   f"the file {size}; the partial file was deleted")


def _check_room(session: HubSession, url: str, part: Path, done: int, total: int | None) -> None:
    """Refuse a file over the size limit (deleting its part) or one the disk cannot hold."""
    config = session.config
    if total is not None and total > config.max_download_bytes:
        _refuse_too_large(session, url, part, total)
    if total is not None:
        free = shutil.disk_usage(part.parent).free
        needed = total - done
        if needed > free - config.min_free_bytes:
            raise HubError(f"{part.name[:-5]}: not enough free space: {_size(needed)} more are "
                           f"needed, {_size(free)} are free and {_size(config.min_free_bytes)} "
                           "must stay free; free some space and run the download again")


class _BackgroundHasher:
    """SHA-256 on a worker thread, so hashing overlaps receiving and writing.

    hashlib releases the GIL on large updates, so with the hash off the receiving thread a
    verified download runs about as fast as an unverified one. The worker first hashes the
    bytes already in a resumed ``.part`` file, then every chunk in the order it was written.
    """

    def __init__(self, resumed_part: Path | None = None, resumed_bytes: int = 0):
        self._queue: queue.Queue = queue.Queue(maxsize=16)
        self._digest = hashlib.sha256()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(resumed_part, resumed_bytes),
                                        name="kubik-hub-sha256", daemon=True)
        self._thread.start()

    def _work(self, resumed_part: Path | None, resumed_bytes: int) -> None:
        try:
            if resumed_part is not None and resumed_bytes:
                with open(resumed_part, "rb") as handle:
                    left = resumed_bytes
                    while left and (block := handle.read(min(left, 4 * CHUNK_SIZE))):
                        self._digest.update(block)
                        left -= len(block)
        except BaseException as exc:  # noqa: BLE001 - re-raised by hexdigest()
            self._error = exc
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise HubError(f"could not read the partial file to resume: {self._error}")
        return self._digest.hexdigest()


def _fetch(session: HubSession, url: str, part: Path, expected: str | None,
           progress: ProgressCallback | None, check_cancel, chunk_size: int,
           deadline: float) -> DownloadResult:
    resumed_from = part.stat().st_size if part.exists() else 0
    hashers = [_BackgroundHasher(part, resumed_from)]

    def check_stop() -> None:
        if check_cancel is not None:
            check_cancel()
        if time.monotonic() > deadline:
            raise HubError(f"{public_url(url)}: the download took longer than "
                           f"{_duration(session.config.download_deadline_s)} "
                           f"(KUBIK_HUB_DOWNLOAD_HOURS); run it again to resume from {part.name}")

    try:
        return _stream(session, url, part, expected, progress, check_stop, chunk_size,
                       resumed_from, hashers)
    finally:
        for hasher in hashers:   # no worker thread outlives the download, whatever happened
            hasher.close()


def _stream(session, url, part, expected, progress, check_stop, chunk_size, resumed_from,
            hashers: list) -> DownloadResult:
    """The download loop; ``hashers[-1]`` is the live hasher (a restart replaces it).
    ``check_stop()`` raises to end it (cancel, deadline)."""
    digest = hashers[-1]
    done = resumed_from
    total: int | None = None
    attempts_allowed = max(1, session.config.max_attempts)
    attempt = 0
    while True:
        attempt += 1
        check_stop()
        headers = {"Accept-Encoding": "identity"}
        if done:
            headers["Range"] = f"bytes={done}-"
        response = session.request("GET", url, headers=headers, stream=True,
                                   ok_statuses=(200, 206, 416))
        try:
            if response.status_code == 416:
                size = _total_from_content_range(response.headers.get("Content-Range"))
                if size is not None and size == done:
                    total = done      # the .part file already holds everything
                    break
                digest.close()        # .part is longer than the file: start over
                done, digest = 0, _BackgroundHasher()
                hashers.append(digest)
                part.unlink(missing_ok=True)
                continue
            if response.headers.get("Content-Type", "").lower().startswith("text/html"):
                raise HubAuthError(f"{public_url(url)}: the server answered a web page instead of "
                                   "the file (a login or early-access page?); set the hub's token "
                                   "(CIVITAI_API_TOKEN / HF_TOKEN) or open the page in a browser")
            if response.status_code == 206:
                start, size = _parse_content_range(response.headers.get("Content-Range"))
                if start != done:
                    raise HubError(f"{public_url(url)}: server resumed at byte {start}, asked {done}")
                total = size
                mode = "ab"
            else:  # 200: the server ignores Range (or nothing to resume): start over
                if done:
                    digest.close()
                    done, digest = 0, _BackgroundHasher()
                    hashers.append(digest)
                length = response.headers.get("Content-Length")
                total = int(length) if length and re.fullmatch(r"[0-9]{1,19}", length) else None
                mode = "wb"
            _check_room(session, url, part, done, total)
            if progress:
                progress(done, total)
            with open(part, mode) as handle:
                for chunk in response.iter_content(chunk_size):
                    check_stop()
                    if done + len(chunk) > session.config.max_download_bytes:
                        handle.close()
                        _refuse_too_large(session, url, part, None)
                    handle.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                handle.flush()
                os.fsync(handle.fileno())   # durable before it can be renamed into view
            if total is None or done == total:
                break
            error = f"the connection ended at byte {done} of {total}"
        except _STREAM_ERRORS as exc:
            error = f"the connection broke at byte {done} ({exc.__class__.__name__})"
        finally:
            response.close()
        if attempt >= attempts_allowed:
            raise HubUnavailable(f"{public_url(url)}: {error}, {attempt} attempts; run the "
                                 f"download again to resume from {part.name}")
        session.pause(session.backoff(attempt))
    sha = digest.hexdigest()
    if expected is not None and sha != expected:
        part.unlink(missing_ok=True)
        raise HashMismatch(f"{part.name[:-5]}: the downloaded file has SHA-256 {sha}, expected "
                           f"{expected}; the partial file was deleted (the hub copy or the "
                           "expected hash is wrong)")
    return DownloadResult(part, sha, done, "downloaded", resumed_from, attempt)


def _parse_content_range(value: str | None) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.match((value or "").strip())
    if not match:
        raise HubError(f"answer 206 without a usable Content-Range ({value!r})")
    total = match.group(3)
    return int(match.group(1)), (None if total == "*" else int(total))


def _total_from_content_range(value: str | None) -> int | None:
    match = re.match(r"^bytes\s+\*/([0-9]{1,19})$", (value or "").strip())
    return int(match.group(1)) if match else None
