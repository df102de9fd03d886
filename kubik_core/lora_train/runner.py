"""``kubik lora train`` in a child process, for programs that must not train in their own
(ComfyUI's node: an hour-long training would hold its prompt thread and the GIL).

Both ends of the protocol live here:

- The child is ``kubik lora train ... --progress-json --stop-on-stdin`` run by this Python with
  the folder holding ``kubik_core`` put first on its sys.path (inside ComfyUI the pack's package
  is called "<pack folder>.kubik_core"; the child imports it under its own name). The path is
  set by the child's first statement rather than PYTHONPATH, which embedded Pythons (ComfyUI's
  Windows portable build) ignore. It prints one JSON object a line on stdout for each event of
  :func:`~kubik_core.lora_train.train.train` (see there), and a last one: ``{"event": "done",
  "lora": ..., "loss_plot": ..., "steps": N}`` or ``{"event": "stopped", "step": N}``.
- A line ``stop`` on its stdin, the end of its stdin (the parent died) or SIGTERM asks it to
  stop after the current step; it then saves the resume file and exits with status 130. The
  LoRA itself is written atomically at the very end, so a stopped run leaves no partial file.
- :func:`run_training` is the parent: it passes events to a callback, polls a stop question,
  and turns a failed child into one line naming the child's last error line.
"""
from __future__ import annotations

import glob
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..common.bounded_json import BoundedJSONError, loads as bounded_loads

STOPPED_EXIT = 130             # the child's exit status after a requested stop
PACKAGE_ROOT = Path(__file__).resolve().parents[2]   # the folder that holds kubik_core
_EOF = object()
# The child's program: this kubik_core first on the path, then the ``kubik`` command line.
_CHILD_MAIN = (f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); "
               "from kubik_core.cli import main; sys.exit(main())")


class TrainingFailed(RuntimeError):
    """The child exited with an error; the message is its last error line."""


# ---------------------------------------------------------------- the child's side
class StopRequests:
    """Answers True once a stop was asked for: SIGTERM (in the main thread's process), or, with
    ``watch_stdin``, a line ``stop`` or the end of standard input. A second SIGTERM ends the
    process at once, as usual."""

    def __init__(self, watch_stdin: bool):
        self._event = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        if watch_stdin:
            threading.Thread(target=self._watch, args=(sys.stdin,), name="kubik-stop-watch", daemon=True).start()

    def _on_sigterm(self, *_):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._event.set()

    def _watch(self, stream) -> None:
        for line in stream:
            if line.strip() == "stop":
                break
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def json_reporter(stream=None):
    """``report`` for train(): each event as one JSON line, flushed at once."""
    def report(event: dict) -> None:
        out = stream or sys.stdout
        out.write(json.dumps(event) + "\n")
        out.flush()
    return report


# ---------------------------------------------------------------- the parent's side
def settings_arguments(settings) -> list[str]:
    """The ``kubik lora train`` arguments that rebuild ``settings`` (a TrainSettings) in the
    child; tests check that the command line parses back into the same settings."""
    from .network import UNET_TARGETS_WIDE

    s = settings
    args = [str(s.data), "--base", str(s.base), "--output", str(s.output), "--name", s.name,
            f"--trigger={s.trigger}", "--resolution", str(s.resolution), "--max-upscale", repr(s.max_upscale),
            "--repeats", str(s.repeats), "--batch-size", str(s.batch_size), "--steps", str(s.steps),
            "--lr", repr(s.lr), "--text-encoder-lr", repr(s.text_encoder_lr), "--rank", str(s.rank),
            "--alpha", repr(float(s.alpha)), "--conv-rank", str(s.conv_rank), "--conv-alpha", repr(float(s.conv_alpha)),
            "--ema-decay", repr(float(s.ema_decay)),
            "--targets", "attention+ff" if tuple(s.unet_targets) == UNET_TARGETS_WIDE else "attention",
            "--schedule", s.schedule, "--warmup", str(s.warmup), "--grad-accum", str(s.grad_accum),
            "--precision", s.precision, "--noise-offset", repr(s.noise_offset),
            "--min-snr-gamma", repr(s.min_snr_gamma), "--caption-dropout", repr(s.caption_dropout),
            "--keep-tokens", str(s.keep_tokens), "--seed", str(s.seed), "--cache", s.cache,
            "--save-every", str(s.save_every), "--optimizer", s.optimizer, "--device", s.device,
            "--key-style", s.key_style, "--sample-every", str(s.sample_every),
            "--sample-steps", str(s.sample_steps), "--sample-cfg", repr(s.sample_cfg)]
    for prompt in s.sample_prompts:
        args.append(f"--sample-prompt={prompt}")   # "=": a prompt may start with "-"
    if s.train_text_encoder:
        args.append("--train-text-encoder")
    if not s.gradient_checkpointing:
        args.append("--no-gradient-checkpointing")
    if s.shuffle_tags:
        args.append("--shuffle-tags")
    if s.cache_dir:
        args += ["--cache-dir", str(s.cache_dir)]
    if s.tokenizer:
        args += ["--tokenizer", str(s.tokenizer)]
    if s.caption_model:
        args += ["--caption-model", str(s.caption_model)]
    if s.write_captions:
        args.append("--write-captions")
    if not s.progress:
        args.append("--no-progress")
    return args


@dataclass
class Outcome:
    """How a child run ended: ``stopped`` (a stop was asked for) or not, and its last event
    ("done" carries the LoRA's path, "stopped" the step saved)."""

    stopped: bool
    last_event: dict


def run_training(settings, on_event, should_stop, *, python: str | None = None, env: dict | None = None,
                 grace: float = 120.0, poll: float = 0.2) -> Outcome:
    """Train ``settings`` in a child process (see the module docstring).

    ``on_event(event)`` gets each progress event; ``should_stop()`` is asked every ``poll``
    seconds. On a stop request, or when ``on_event`` raises (ComfyUI's progress hook raises on
    Interrupt), the child is asked to stop and given ``grace`` seconds to save its resume file
    before it is terminated; the exception, if any, then propagates. A child that fails raises
    :class:`TrainingFailed` with its last error line.
    """
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONUNBUFFERED"] = "1"
    command = [python or sys.executable, "-c", _CHILD_MAIN, "lora", "train", *settings_arguments(settings),
               "--progress-json", "--stop-on-stdin"]
    process = subprocess.Popen(command, cwd=PACKAGE_ROOT, env=child_env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               encoding="utf-8", errors="replace")
    events: queue.Queue = queue.Queue()
    errors: deque = deque(maxlen=40)
    readers = [threading.Thread(target=_read_events, args=(process.stdout, events), daemon=True),
               threading.Thread(target=_read_lines, args=(process.stderr, errors), daemon=True)]
    for reader in readers:
        reader.start()
    last: dict = {}
    stop = False
    try:
        while True:
            try:
                event = events.get(timeout=poll)
            except queue.Empty:
                event = None
            if event is _EOF:
                break
            if event is not None:
                last = event
                on_event(event)
            if should_stop():
                stop = True
                break
    except BaseException:
        _stop(process, grace, settings)
        raise
    if stop:
        _stop(process, grace, settings)
        for reader in readers:
            reader.join(timeout=5)
        stopped = [event for event in _drain(events) if event.get("event") == "stopped"]
        return Outcome(True, stopped[-1] if stopped else last)
    process.wait()
    for reader in readers:
        reader.join(timeout=5)
    if process.returncode == 0 and last.get("event") == "done":
        return Outcome(False, last)
    if process.returncode == STOPPED_EXIT and last.get("event") == "stopped":
        return Outcome(True, last)   # stopped by someone else (SIGTERM to the child)
    raise TrainingFailed(_error_line(errors, process.returncode))


def _read_events(stream, events: queue.Queue) -> None:
    """The child's stdout: JSON event lines go to ``events``; other lines (its log) are dropped."""
    try:
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = bounded_loads(line, max_depth=4, max_bytes=1 << 16)
            except BoundedJSONError:
                continue
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                events.put(event)
    finally:
        events.put(_EOF)


def _read_lines(stream, lines: deque) -> None:
    for line in stream:
        if line.strip():
            lines.append(line.strip())


def _drain(events: queue.Queue) -> list:
    """The events still queued (the child's last words after a stop)."""
    found = []
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return found
        if event is not _EOF:
            found.append(event)


def _error_line(lines: deque, status: int) -> str:
    """The child's last error line without the command prefix ("kubik lora: error: ...")."""
    last = lines[-1] if lines else ""
    for prefix in ("kubik lora: error: ",):
        if last.startswith(prefix):
            last = last[len(prefix):]
    if status is not None and status < 0:
        return (f"the training process was killed (signal {-status}; out of memory?)"
                + (f": {last}" if last else ""))
    return last or f"the training process exited with status {status} without saying why"


def _stop(process: subprocess.Popen, grace: float, settings) -> None:
    """Ask the child to stop (a line on stdin), wait ``grace`` seconds for it to save its
    resume file, then kill it; hidden temporary files a killed writer left are removed."""
    if process.poll() is None:
        try:
            process.stdin.write("stop\n")
            process.stdin.flush()
            process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            for leftover in Path(settings.output).glob(f".{glob.escape(settings.name)}.*.tmp"):
                leftover.unlink(missing_ok=True)
