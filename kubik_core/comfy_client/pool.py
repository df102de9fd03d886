"""Jobs spread over one or many ComfyUI servers, each job run once and its files fetched once.

How a job's fate is known (the reason for most of this file):

- Each job is queued under a prompt id chosen here and written to the log *before* it is sent,
  so neither a lost answer nor a crash of this process can hide or double a job: the id can
  always be looked up on its server.
- The websocket reports progress and the end of a prompt promptly, but sockets stall (long runs,
  model switches, proxies), so every server is also polled: ``/queue`` first, then
  ``/history/ID`` for the prompts that left the queue. That order matters: ComfyUI answers
  ``{}`` at ``/history/ID`` both while a prompt waits or runs and for an id it never saw, so a
  prompt counts as lost only when it is in neither the queue nor the history, read in that order
  (ComfyUI writes the history entry before it takes the prompt off the queue).
- A server that fails every request for ``down_after`` seconds is given up for the run; its
  unfinished jobs are sent to the others. A server that refuses a prompt (``/prompt`` answers
  400: node errors, a missing model) is not sent that job again; the job fails once every live
  server has refused it. A prompt that ran and raised an error fails at once: the same prompt
  would fail again.
"""
from __future__ import annotations

import asyncio
import collections
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .client import ComfyClient, JobRejected, ServerUnavailable, clean, output_files
from .log import PastJob, RunLog, past_jobs
from .workflow import Job

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class PoolSettings:
    """How eagerly servers are watched; the defaults suit servers on a local network."""
    max_in_flight: int = 2        # prompts queued on one server at a time (one runs, one waits)
    poll_interval: float = 2.0    # seconds between polls while the socket is down or silent
    stall_timeout: float = 30.0   # a socket silent this long is treated as stalled (polls speed up)
    down_after: float = 20.0      # a server failing every request this long is given up
    heartbeat: float = 10.0       # websocket ping interval; an unanswered ping closes the socket
    max_resends: int = 3          # times one job may be re-sent after its server lost it


@dataclass
class JobResult:
    job: Job
    status: str                   # "done", "failed" or "skipped" (finished in an earlier run)
    server: str | None = None
    prompt_id: str | None = None
    outputs: list = field(default_factory=list)   # file names inside the output folder
    error: str | None = None


@dataclass
class RunReport:
    results: list
    log_path: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


class NoServerLeft(Exception):
    """Every server stopped answering while jobs remained."""


class _Attempt:
    """One job queued on one server under one prompt id."""

    def __init__(self, job: Job, server: "_Server", prompt_id: str):
        self.job, self.server, self.prompt_id = job, server, prompt_id
        self.submitted = time.time()
        self.started: float | None = None
        self.checking = False
        self.bar = None


class _Server:
    def __init__(self, client: ComfyClient):
        self.client = client
        self.url = client.url
        self.in_flight: dict[str, _Attempt] = {}
        self.foreign = 0                   # prompts in its queue that are not ours
        self.dispatched = 0
        self.down: str | None = None
        self.failing_since: float | None = None
        self.ws_connected = False
        self.last_message = 0.0
        self.poke = asyncio.Event()

    def load(self) -> tuple:
        """Lower is better: answering servers first, then the shortest queue, then round robin."""
        return (self.failing_since is not None, len(self.in_flight) + self.foreign, self.dispatched)


class Pool:
    """Runs jobs over ``clients`` (open ComfyClients), writing events to ``log``."""

    def __init__(self, clients: list[ComfyClient], out_dir: Path, log: RunLog, settings: PoolSettings | None = None,
                 echo: Callable[[str], None] | None = None, on_event: Callable[[str, dict], None] | None = None,
                 progress: bool | None = False):
        self.servers = [_Server(c) for c in clients]
        self.out_dir = Path(out_dir)
        self.log = log
        self.settings = settings or PoolSettings()
        self.echo = echo
        self.on_event = on_event
        self.progress = progress
        self.pending: collections.deque[Job] = collections.deque()
        self.results: dict[str, JobResult] = {}
        self.rejected_by: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.resends: dict[str, int] = collections.defaultdict(int)
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._overall = None

    # ------------------------------------------------------------------ events
    def _event(self, event: str, line: str | None = None, **fields) -> None:
        self.log.write(event, **fields)
        if line and self.echo:
            if self._overall is not None and not self._overall.disable:
                from tqdm import tqdm
                with tqdm.external_write_mode(file=sys.stderr):   # the line goes above the bars
                    self.echo(line)
            else:
                self.echo(line)
        if self.on_event:
            self.on_event(event, fields)

    def _job_fields(self, attempt: _Attempt) -> dict:
        job = attempt.job
        return {"job": job.name, "key": job.key, "server": attempt.server.url, "prompt_id": attempt.prompt_id,
                "inputs": job.values}

    def _resolve(self, result: JobResult) -> None:
        self.results[result.job.key] = result
        if self._overall is not None:
            self._overall.update(1)
        self.wake.set()

    # ------------------------------------------------------------------ run
    async def run(self, jobs: list[Job], past: dict[str, PastJob] | None = None) -> list[JobResult]:
        past = past or {}
        if len({job.key for job in jobs}) != len(jobs):
            raise ValueError("two jobs have the same prompt (same key); ComfyUI would answer the second from its cache")
        by_url = {s.url: s for s in self.servers}
        todo = 0
        for job in jobs:
            before = past.get(job.key)
            if before and before.state == "done":
                self.results[job.key] = JobResult(job, "skipped", before.record.get("server"),
                                                  before.record.get("prompt_id"), list(before.record.get("outputs") or []))
            elif before and before.state == "submitted" and before.record.get("server") in by_url \
                    and isinstance(before.record.get("prompt_id"), str):
                # Sent by a run that stopped before it heard back: look the prompt up, do not resend.
                server = by_url[before.record["server"]]
                server.in_flight[before.record["prompt_id"]] = _Attempt(job, server, before.record["prompt_id"])
                todo += 1
            else:
                self.pending.append(job)
                todo += 1
        if self.progress is not False and todo:
            from tqdm import tqdm
            self._overall = tqdm(total=todo, desc="jobs", unit="job", disable=None if self.progress is None else False,
                                 file=sys.stderr, position=0)
        for server in self.servers:
            self._spawn(self._watch_socket(server))
            self._spawn(self._poll(server))
        try:
            while len(self.results) < len(jobs):
                await self._dispatch()
                if all(s.down for s in self.servers):
                    reasons = "; ".join(f"{s.url}: {s.down}" for s in self.servers)
                    raise NoServerLeft(f"every server stopped answering ({reasons})")
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for server in self.servers:
                for attempt in server.in_flight.values():
                    self._close_bar(attempt)
            if self._overall is not None:
                self._overall.close()
        return [self.results[job.key] for job in jobs]

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ dispatch
    async def _dispatch(self) -> None:
        while self.pending:
            job = self.pending[0]
            live = [s for s in self.servers if not s.down]
            willing = [s for s in live if s.url not in self.rejected_by[job.key]]
            if live and not willing:
                self.pending.popleft()
                refusals = "; ".join(f"{url}: {why}" for url, why in self.rejected_by[job.key].items())
                self._fail_job(job, f"rejected by every server ({refusals})", None, None, kind="rejected")
                continue
            free = [s for s in willing if len(s.in_flight) < self.settings.max_in_flight]
            if not free:
                return
            server = min(free, key=_Server.load)
            self.pending.popleft()
            attempt = _Attempt(job, server, uuid.uuid4().hex)
            server.in_flight[attempt.prompt_id] = attempt
            server.dispatched += 1
            # Logged before it is sent: a crash between the two is resolved by looking the id up.
            self._event("submitted", **self._job_fields(attempt))
            try:
                await server.client.submit(job.prompt, attempt.prompt_id)
            except JobRejected as exc:
                del server.in_flight[attempt.prompt_id]
                self.rejected_by[job.key][server.url] = str(exc)
                self._event("rejected", f"rejected {job.name} on {server.url}: {exc}",
                            **self._job_fields(attempt), error=str(exc))
                self.pending.appendleft(job)
            except ServerUnavailable as exc:
                # The server may or may not have queued it: polling finds out (queue, history)
                # and re-sends only when the id is in neither.
                self._failing(server, exc)
            else:
                self._answered(server)

    def _fail_job(self, job: Job, error: str, server: str | None, prompt_id: str | None, kind: str) -> None:
        self._event("failed", f"failed {job.name}: {error}", job=job.name, key=job.key, server=server,
                    prompt_id=prompt_id, inputs=job.values, error=error, kind=kind)
        self._resolve(JobResult(job, "failed", server, prompt_id, error=error))

    # ------------------------------------------------------------------ server health
    def _answered(self, server: _Server) -> None:
        server.failing_since = None

    def _failing(self, server: _Server, exc: Exception) -> None:
        now = time.monotonic()
        if server.failing_since is None:
            server.failing_since = now
        if now - server.failing_since >= self.settings.down_after and not server.down:
            server.down = str(exc)
            self._event("server_down", f"giving up {server.url}: {exc}", server=server.url, error=str(exc))
            for attempt in list(server.in_flight.values()):
                self._resend(attempt, f"{server.url} stopped answering")
            self.wake.set()

    def _resend(self, attempt: _Attempt, reason: str) -> None:
        server, job = attempt.server, attempt.job
        server.in_flight.pop(attempt.prompt_id, None)
        self._close_bar(attempt)
        self.resends[job.key] += 1
        if self.resends[job.key] > self.settings.max_resends:
            self._fail_job(job, f"lost {self.resends[job.key]} times, last: {reason}", server.url,
                           attempt.prompt_id, kind="lost")
            return
        self._event("resent", f"re-sending {job.name}: {reason}", **self._job_fields(attempt), reason=reason)
        self.pending.appendleft(job)
        self.wake.set()

    # ------------------------------------------------------------------ watching
    async def _watch_socket(self, server: _Server) -> None:
        """Progress and prompt ends from the websocket, reconnecting when it closes or stalls."""
        delay = 1.0
        while not server.down:
            try:
                async for message in server.client.events(heartbeat=self.settings.heartbeat):
                    server.ws_connected = True
                    server.last_message = time.monotonic()
                    delay = 1.0
                    self._on_message(server, message)
                    if server.down:
                        return
            except ServerUnavailable:
                pass
            server.ws_connected = False
            server.poke.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _socket_healthy(self, server: _Server) -> bool:
        return server.ws_connected and time.monotonic() - server.last_message < self.settings.stall_timeout

    async def _poll(self, server: _Server) -> None:
        """The fallback that never trusts the socket alone: /queue, then /history of what left it."""
        while not server.down:
            interval = self.settings.stall_timeout if self._socket_healthy(server) else self.settings.poll_interval
            server.poke.clear()
            try:
                await asyncio.wait_for(server.poke.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            if server.in_flight and not server.down:
                await self._check(server)

    def _on_message(self, server: _Server, message: dict) -> None:
        kind, data = message["type"], message["data"]
        if kind == "status":
            remaining = ((data.get("status") or {}).get("exec_info") or {}).get("queue_remaining")
            if isinstance(remaining, int):
                server.foreign = max(0, remaining - len(server.in_flight))
            return
        attempt = server.in_flight.get(data.get("prompt_id"))
        if attempt is None:
            return
        if kind == "execution_start":
            attempt.started = time.time()
        elif kind == "executing" and data.get("node") is not None:
            self._bar(attempt, desc=f"{attempt.job.name} node {clean(data['node'], 20)}")
        elif kind == "progress" and isinstance(data.get("value"), int) and isinstance(data.get("max"), int):
            self._bar(attempt, desc=f"{attempt.job.name} node {clean(data.get('node'), 20)}",
                      total=data["max"], n=data["value"])
        if kind in ("execution_success", "execution_error", "execution_interrupted") or (
                kind == "executing" and data.get("node") is None):
            self._spawn(self._check(server, [attempt]))

    async def _check(self, server: _Server, only: list[_Attempt] | None = None) -> None:
        """Settle the prompts of ``server`` that left its queue: finished, failed, or lost."""
        attempts = [a for a in (only or list(server.in_flight.values()))
                    if not a.checking and server.in_flight.get(a.prompt_id) is a]
        if not attempts:
            return
        for attempt in attempts:
            attempt.checking = True
        try:
            try:
                queue = await server.client.queue()
            except ServerUnavailable as exc:
                self._failing(server, exc)
                return
            self._answered(server)
            server.foreign = max(0, len(queue) - sum(pid in queue for pid in server.in_flight))
            for attempt in attempts:
                if server.down or server.in_flight.get(attempt.prompt_id) is not attempt:
                    continue
                if attempt.prompt_id in queue:
                    if attempt.prompt_id in queue.running and attempt.started is None:
                        attempt.started = time.time()
                    continue
                if not await self._settle(attempt):
                    return   # the server failed mid-way; the next poll tries again
        finally:
            for attempt in attempts:
                attempt.checking = False

    async def _settle(self, attempt: _Attempt) -> bool:
        """A prompt that left the queue: read its history entry, then fetch its files.
        Returns False when the server failed to answer (nothing was decided)."""
        server = attempt.server
        try:
            entry = await server.client.history(attempt.prompt_id)
        except ServerUnavailable as exc:
            self._failing(server, exc)
            return False
        if entry is None:
            self._resend(attempt, f"{server.url} no longer knows prompt {attempt.prompt_id} (restarted?)")
            return True
        status = entry.get("status") or {}
        if status.get("status_str") == "error" or status.get("completed") is False:
            server.in_flight.pop(attempt.prompt_id, None)
            self._close_bar(attempt)
            self._fail_job(attempt.job, _execution_error(status), server.url, attempt.prompt_id, kind="error")
            return True
        started = time.time()
        try:
            outputs = await self._download(attempt, entry)
        except ServerUnavailable as exc:
            self._failing(server, exc)
            return False
        server.in_flight.pop(attempt.prompt_id, None)
        self._close_bar(attempt)
        finished = time.time()
        timings = {"queued_s": round((attempt.started or started) - attempt.submitted, 3),
                   "total_s": round(finished - attempt.submitted, 3), "download_s": round(finished - started, 3)}
        timings.update(_server_timings(status))
        self._event("done", f"done {attempt.job.name} on {server.url} ({len(outputs)} file(s))",
                    **self._job_fields(attempt), outputs=outputs, timings=timings)
        self._resolve(JobResult(attempt.job, "done", server.url, attempt.prompt_id, outputs))
        self.wake.set()
        return True

    async def _download(self, attempt: _Attempt, entry: dict) -> list[str]:
        """Every file the prompt lists, as ``<job>_<node>_<file name>`` in the output folder."""
        names = []
        for node_id, ref in output_files(entry):
            base = _UNSAFE.sub("_", f"{attempt.job.name}_{node_id}_{Path(ref['filename']).name}").lstrip(".") or "output"
            name, n = base, 1
            while name in names:
                n += 1
                stem, dot, ext = base.rpartition(".")
                name = f"{stem}-{n}.{ext}" if dot else f"{base}-{n}"
            await attempt.server.client.download(ref, self.out_dir / name)
            names.append(name)
        return names

    # ------------------------------------------------------------------ progress bars
    def _bar(self, attempt: _Attempt, desc: str, total: int | None = None, n: int | None = None) -> None:
        if self._overall is None or self._overall.disable:
            return
        from tqdm import tqdm

        if attempt.bar is None:
            attempt.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, unit="step")
        attempt.bar.set_description(desc, refresh=False)
        if total is not None:
            attempt.bar.total = total
        if n is not None:
            attempt.bar.n = n
        attempt.bar.refresh()

    def _close_bar(self, attempt: _Attempt) -> None:
        if attempt.bar is not None:
            attempt.bar.close()
            attempt.bar = None


def _execution_error(status: dict) -> str:
    for name, data in status.get("messages") or []:
        if name == "execution_error" and isinstance(data, dict):
            return (f"node {clean(data.get('node_id'), 20)} ({clean(data.get('node_type'), 40)}) raised "
                    f"{clean(data.get('exception_type'), 60)}: {clean(data.get('exception_message'), 200)}")
        if name == "execution_interrupted":
            return "interrupted on the server"
    return "the prompt ended with an error"


def _server_timings(status: dict) -> dict:
    """Run time on the server, from the start and end timestamps ComfyUI keeps in the history."""
    stamps = {}
    for item in status.get("messages") or []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict) \
                and isinstance(item[1].get("timestamp"), (int, float)):
            stamps[item[0]] = item[1]["timestamp"]
    if "execution_start" in stamps and "execution_success" in stamps:
        return {"run_s": round((stamps["execution_success"] - stamps["execution_start"]) / 1000, 3)}
    return {}


async def run_jobs_async(jobs: list[Job], servers: list, out_dir, *, headers: dict | None = None,
                         settings: PoolSettings | None = None, resume: bool = True,
                         echo: Callable[[str], None] | None = None,
                         on_event: Callable[[str, dict], None] | None = None,
                         progress: bool | None = False) -> RunReport:
    """Run ``jobs`` over ``servers`` (URLs or ComfyClients); see :func:`run_jobs`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clients = [s if isinstance(s, ComfyClient) else ComfyClient(s, headers) for s in servers]
    log = RunLog(out_dir)
    try:
        past = past_jobs(out_dir, skip=log.path) if resume else {}
        log.write("run", run=log.run_id, servers=[c.url for c in clients], jobs=len(jobs))
        for client in clients:
            await client.open()
        results = await Pool(clients, out_dir, log, settings, echo, on_event, progress).run(jobs, past)
        return RunReport(results, log.path)
    finally:
        for client in clients:
            await client.close()
        log.close()


def run_jobs(jobs: list[Job], servers: list, out_dir, **kwargs) -> RunReport:
    """Queue ``jobs`` (from :func:`~kubik_core.comfy_client.workflow.expand_jobs`) on ``servers``,
    download every output into ``out_dir`` and log the run there; jobs finished by an earlier run
    into the same folder are skipped (``resume=False`` runs them all). Keyword arguments:
    ``headers`` (sent to these servers only), ``settings`` (:class:`PoolSettings`), ``echo`` (a
    function given one line per finished, failed or re-sent job), ``on_event``, ``progress``.
    Raises :class:`NoServerLeft` when every server stops answering."""
    return asyncio.run(run_jobs_async(jobs, servers, out_dir, **kwargs))
