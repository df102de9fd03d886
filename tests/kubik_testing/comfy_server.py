"""Start a real ComfyUI server (from COMFYUI_DIR) with this pack installed, for integration tests.

The pack is copied into a temporary custom_nodes folder under another name and loaded through
``--extra-model-paths-config``, exactly as ComfyUI loads any pack. The server runs headless on
the CPU on a free local port, with its own input, output, temp and user folders and database
file. By default it serves an empty front-end folder; ``frontend=True`` serves the real
editor (the comfyui-frontend-package installed beside ComfyUI's requirements) for browser tests.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PACK_FOLDER = "KubikAI Under Test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, comfyui_dir: Path, repo: Path, workdir: Path, python: str | None = None,
                 frontend: bool = False, pack_folder: str = PACK_FOLDER):
        self.comfyui_dir = Path(comfyui_dir)
        self.frontend = frontend
        self.pack_folder = pack_folder
        self.repo = Path(repo)
        self.workdir = Path(workdir)
        self.python = python or os.environ.get("COMFYUI_PYTHON") or sys.executable
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output_dir = self.workdir / "output"
        self.input_dir = self.workdir / "input"
        self.models_dir = self.workdir / "models"
        self.user_dir = self.workdir / "user"
        self.log_path = self.workdir / "comfyui.log"
        self.process: subprocess.Popen | None = None

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 240.0) -> None:
        custom_nodes = self.workdir / "custom_nodes"
        shutil.copytree(self.repo, custom_nodes / self.pack_folder, ignore=shutil.ignore_patterns(
            ".git", ".venv", "venv", "out", "__pycache__", ".pytest_cache", "*.egg-info", ".gl", ".whl",
            "build", "node_modules", ".kubik_cache", ".devcarry"))
        for d in (self.output_dir, self.input_dir, self.models_dir, self.user_dir, self.workdir / "frontend"):
            d.mkdir(parents=True, exist_ok=True)
        yaml = self.workdir / "extra_model_paths.yaml"
        yaml.write_text(
            "kubik_test:\n"
            # The test's folders come first: a node that saves a model (Kubik Train LoRA) writes
            # there, never into the ComfyUI checkout's own models/ that every test server shares.
            "  is_default: true\n"
            f"  base_path: {self.models_dir}\n"
            f"  custom_nodes: {custom_nodes}\n"
            "  checkpoints: checkpoints\n  loras: loras\n  classifiers: classifiers\n  kubik3d: kubik3d\n"
            "  controlnet: controlnet\n  embeddings: embeddings\n  clip_vision: clip_vision\n"
            "  kubik_captioners: kubik_captioners\n")
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-api-nodes",
               "--output-directory", str(self.output_dir), "--input-directory", str(self.input_dir),
               "--temp-directory", str(self.workdir), "--user-directory", str(self.user_dir),
               "--extra-model-paths-config", str(yaml),
               # A database file of its own, as ComfyUI's default is a file: with ':memory:'
               # SQLAlchemy keeps one connection per thread, and the connection ComfyUI 0.8.0's
               # init_db leaves open is then closed by whichever thread collects it, which logs
               # a traceback at random moments.
               "--database-url", f"sqlite:///{self.workdir / 'comfyui.db'}"]
        if not self.frontend:
            cmd += ["--front-end-root", str(self.workdir / "frontend")]
        self._log = open(self.log_path, "w")
        # Caches and data the pack keeps outside ComfyUI's user folder go to the workdir, not to the
        # developer's ~/.cache and ~/.local/share, unless the test set them (the server inherits
        # the test's environment, e.g. KUBIK_LEARNING_URL).
        env = dict(os.environ)
        for name, folder in (("KUBIK_CACHE_DIR", "kubik-cache"), ("XDG_CACHE_HOME", "xdg-cache"),
                             ("XDG_DATA_HOME", "xdg-data")):
            env.setdefault(name, str(self.workdir / folder))
        self.process = subprocess.Popen(cmd, cwd=self.comfyui_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.25)     # a refused connection costs nothing: ask often
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -------------------------------------------------------------- HTTP API
    def get(self, path: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.load(resp)

    def post(self, path: str, payload: dict, timeout: float = 30.0):
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def queue(self, workflow: dict, timeout: float = 300.0) -> dict:
        """POST a workflow to /prompt and wait for its history entry; returns that entry."""
        status, answer = self.post("/prompt", {"prompt": workflow, "client_id": "kubik-tests"})
        if status != 200:
            raise AssertionError(f"/prompt refused the workflow ({status}): {json.dumps(answer)[:3000]}")
        return self.wait(answer["prompt_id"], timeout)

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """Wait for a queued prompt to finish (with success or an error); returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
                return entry
            time.sleep(0.1)     # most test graphs finish in well under a second
        raise TimeoutError(f"workflow {prompt_id} did not finish within {timeout:.0f} s")
