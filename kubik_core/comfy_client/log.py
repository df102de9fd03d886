"""The JSONL log of a queue run, and what earlier runs into the same folder already did.

Each run appends one file, ``<out>/queue-logs/<run id>.jsonl``: a ``run`` line, then one line
per event of a job (``submitted``, ``done``, ``failed``, ``resent``), each with the job's name
and key (a digest of its prompt), the server, the prompt id, the values that vary, the output
files and timings. No header value ever reaches a log. A new run reads every earlier log of the
folder: a job whose prompt finished (and whose files are all still there) is not sent again; one
that was submitted and never reported can be looked up on its server by its prompt id instead
of being sent twice.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..common import bounded_json

LOG_FOLDER = "queue-logs"
MAX_LOG_LINE = 4 * 1024 * 1024


@dataclass
class PastJob:
    """The last known state of a job key in earlier runs."""
    state: str                    # "done", "failed" or "submitted"
    record: dict


class RunLog:
    """Appends one run's events to ``<out>/queue-logs/<run id>.jsonl``, a line at a time."""

    def __init__(self, out_dir: Path):
        self.folder = Path(out_dir) / LOG_FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        # Names sort in start order (to the microsecond), which is the order past_jobs reads them.
        self.run_id = datetime.now().strftime("%Y%m%d-%H%M%S-%f") + "-" + secrets.token_hex(3)
        self.path = self.folder / f"{self.run_id}.jsonl"
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **fields) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def past_jobs(out_dir: Path, skip: Path | None = None) -> dict[str, PastJob]:
    """Job key -> its last state in the earlier logs of ``out_dir`` (oldest file first). A
    ``done`` job whose files have gone is forgotten, so it runs again; unreadable lines (a run
    killed mid-write) are skipped."""
    folder = Path(out_dir) / LOG_FOLDER
    known: dict[str, PastJob] = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else ():
        if skip is not None and path == skip:
            continue
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = bounded_json.loads(line, max_bytes=MAX_LOG_LINE, max_depth=16)
            except bounded_json.BoundedJSONError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                continue
            event = record.get("event")
            if event in ("done", "failed", "submitted"):
                known[record["key"]] = PastJob(event, record)
            elif event == "resent":   # its prompt id was given up; the next run starts afresh
                known.pop(record["key"], None)
    for key, past in list(known.items()):
        if past.state == "done":
            files = past.record.get("outputs") or []
            if not all(isinstance(f, str) and (Path(out_dir) / f).is_file() for f in files):
                del known[key]
    return known
