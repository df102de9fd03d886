"""``kubik queue``: run a workflow (with set values, sweeps, repeats) on one or many ComfyUI servers.

Everything the user typed is checked before any prompt is sent: server addresses, headers, the
workflow file, and each ``--set`` / ``--sweep`` value against the servers' ``/object_info``.
"""
from __future__ import annotations

import os
import re

from ..common.commands import CommandError

TOKEN_VARIABLE = "KUBIK_COMFY_TOKEN"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register(subparsers) -> None:
    queue = subparsers.add_parser(
        "queue", help="queue a workflow on one or many ComfyUI servers, with sweeps, resume and downloads",
        description="Queue a ComfyUI workflow (API or editor format) on one or many servers. Values are "
                    "checked against the servers' /object_info before anything is sent; outputs are "
                    "downloaded into --out, named by job, with a JSONL log that lets the same command "
                    "resume: finished jobs are not sent again.")
    queue.add_argument("workflow", metavar="WORKFLOW.json", help="a workflow saved by the editor, or its API export")
    queue.add_argument("--server", action="append", required=True, metavar="URL",
                       help="a ComfyUI server, e.g. http://127.0.0.1:8188 (repeat for several)")
    queue.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                       help="set an input of a node (by id or title) for every job, e.g. --set KSampler.steps=20")
    queue.add_argument("--sweep", action="append", default=[], metavar="NODE.INPUT=V1,V2,...",
                       help="one job per value (several --sweep: every combination), e.g. --sweep 3.cfg=4,6,8")
    queue.add_argument("--repeat", type=int, default=1, metavar="N",
                       help="queue each job N times with its seeds increased by 1 each time (default 1)")
    queue.add_argument("--out", default="queue-out", metavar="DIR",
                       help="folder for the outputs and the run logs (default ./queue-out)")
    queue.add_argument("--max-in-flight", type=int, default=2, metavar="N",
                       help="prompts queued on one server at a time (default 2)")
    queue.add_argument("--header", action="append", default=[], metavar="NAME=ENV_VAR",
                       help="send header NAME with the value of environment variable ENV_VAR to the servers "
                            f"(${TOKEN_VARIABLE}, when set, is sent as 'Authorization: Bearer ...')")
    queue.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                       help="seconds of websocket silence after which a server's queue and history are "
                            "polled every 2 s instead of every S seconds (default 30)")
    queue.add_argument("--down-after", type=float, default=20.0, metavar="S",
                       help="seconds of failed requests after which a server is given up and its "
                            "jobs are sent elsewhere (default 20)")
    queue.set_defaults(func=_queue)


def headers_from_environment(specs: list[str], servers: list[str]) -> dict:
    """Headers for ``--header NAME=ENV_VAR`` and $KUBIK_COMFY_TOKEN; values are read from the
    environment and never shown. Refused for plain-http servers other than this machine."""
    from .client import is_loopback

    headers = {}
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for spec in specs:
        name, sep, variable = spec.partition("=")
        if not sep or not _HEADER_NAME.match(name) or not _ENV_NAME.match(variable):
            raise CommandError(f"--header {spec!r}: expected NAME=ENV_VAR (the value is read from the environment "
                               "variable, so that it never appears in the command line)")
        value = os.environ.get(variable)
        if not value:
            raise CommandError(f"--header {name}: the environment variable {variable} is not set")
        headers[name] = value
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise CommandError(f"header {name}: its value holds a line break")
    if headers:
        plain = [url for url in servers if url.startswith("http://") and not is_loopback(url)]
        if plain:
            raise CommandError(f"not sending {', '.join(sorted(headers))} over plain http to {plain[0]}: "
                               "use an https:// address (credentials travel only encrypted)")
    return headers


def _queue(args) -> int:
    import asyncio

    from ..common.paths import writable_folder
    from .client import ComfyClient, ServerUnavailable, normalize_server_url
    from .pool import NoServerLeft, PoolSettings, run_jobs
    from .workflow import WorkflowError, expand_jobs, load_workflow, split_assignment, to_api

    servers = []
    for url in args.server:
        try:
            url = normalize_server_url(url)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if url not in servers:
            servers.append(url)
    if args.max_in_flight < 1:
        raise CommandError(f"--max-in-flight {args.max_in_flight}: must be 1 or more")
    if args.repeat < 1:
        raise CommandError(f"--repeat {args.repeat}: must be 1 or more")
    for flag, value in (("--stall-timeout", args.stall_timeout), ("--down-after", args.down_after)):
        if not value > 0 or value == float("inf"):
            raise CommandError(f"{flag} {value}: must be a positive number of seconds")
    headers = headers_from_environment(args.header, servers)
    try:
        data = load_workflow(args.workflow)
        for text in args.set:
            split_assignment(text, "--set")
        for text in args.sweep:
            split_assignment(text, "--sweep")
        out = writable_folder(args.out, "--out")
    except (WorkflowError, ValueError) as exc:
        raise CommandError(str(exc)) from None

    async def object_infos():
        async def one(url):
            async with ComfyClient(url, headers) as client:
                return await client.object_info()
        return await asyncio.gather(*(one(url) for url in servers))

    try:
        infos = asyncio.run(object_infos())
    except ServerUnavailable as exc:
        raise CommandError(f"{exc} (check --server; nothing was queued)") from None
    try:
        api = to_api(data, infos[0])
        for url, info in zip(servers[1:], infos[1:]):
            missing = sorted({n["class_type"] for n in api.values()} - set(info))
            if missing:
                raise WorkflowError(f"{url} has no node type {missing[0]!r} (a custom node pack missing there?)")
        jobs = expand_jobs(api, infos[0], args.set, args.sweep, args.repeat)
    except WorkflowError as exc:
        raise CommandError(f"{args.workflow}: {exc}") from None

    settings = PoolSettings(max_in_flight=args.max_in_flight, stall_timeout=args.stall_timeout,
                            down_after=args.down_after)
    print(f"{len(jobs)} job(s) on {len(servers)} server(s); outputs in {out}")
    try:
        report = run_jobs(jobs, servers, out, headers=headers, settings=settings, echo=print, progress=None)
    except NoServerLeft as exc:
        raise CommandError(f"{exc}; run the same command again to resume") from None
    done, skipped, failed = report.count("done"), report.count("skipped"), report.count("failed")
    print(f"{done} done, {skipped} finished before (skipped), {failed} failed; log: {report.log_path}")
    return 1 if failed else 0
