"""Queue workflows on one or many ComfyUI servers over their HTTP API (``kubik queue``).

- ``workflow``: load a workflow file, convert the editor's format with ``/object_info``, address
  nodes by id or title, check and apply ``--set`` / ``--sweep`` / ``--repeat`` into jobs.
- ``client``: :class:`ComfyClient`, the requests to one server (aiohttp: HTTP and websocket).
- ``pool``: :func:`run_jobs`, jobs spread over servers by queue length, watched by websocket and
  by polling, re-sent when a server goes away, outputs downloaded once.
- ``log``: the JSONL log of each run, from which the next run resumes.
- ``cli``: the ``kubik queue`` command.

Imports only ``kubik_core.common`` and third-party libraries.
"""
from .client import ComfyClient, JobRejected, ServerUnavailable
from .pool import JobResult, NoServerLeft, PoolSettings, RunReport, run_jobs, run_jobs_async
from .workflow import Job, WorkflowError, expand_jobs, load_workflow, to_api

__all__ = ["ComfyClient", "JobRejected", "ServerUnavailable", "JobResult", "NoServerLeft", "PoolSettings",
           "RunReport", "run_jobs", "run_jobs_async", "Job", "WorkflowError", "expand_jobs", "load_workflow",
           "to_api"]
