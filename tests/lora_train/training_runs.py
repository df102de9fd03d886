"""What the end-to-end `kubik lora train` tests share: real photos to train on, the offline
environment of a CLI run, reading the written LoRA, the run's own loss probe, and ComfyUI's LoRA
loader on the result (comfy_lora_check.py in a subprocess, since ComfyUI must not be imported
into the test process)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def write_photos(folder: Path) -> None:
    """Three of scikit-image's photos, scaled down (training runs at 64x64-pixel buckets)."""
    import skimage.data

    folder.mkdir()
    for name, size in (("astronaut", (80, 80)), ("coffee", (96, 64)), ("chelsea", (96, 64))):
        Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.Resampling.LANCZOS).save(folder / f"{name}.png")
    (folder / "coffee.txt").write_text("kbk style, a cup of coffee, saucer", encoding="utf-8")


def offline_env(tmp: Path) -> dict:
    """A `kubik` subprocess's environment: no Hugging Face hub (an empty cache), its own kubik
    cache, one thread."""
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "empty-hf-home"),
                KUBIK_CACHE_DIR=str(tmp / "kubik-cache"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def read_lora(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a LoRA file."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}


def fixed_batch_losses(run: subprocess.CompletedProcess) -> tuple[float, float]:
    """(before, after) of the loss probe the trainer prints."""
    found = re.search(r"loss on a fixed batch: ([\d.]+) before, ([\d.]+) after", run.stdout)
    return tuple(map(float, found.groups()))


def comfy_lora_reports(comfyui_dir: str, checkpoint: Path, *loras: Path) -> list[dict]:
    """ComfyUI's loader on ``checkpoint`` with each of ``loras``: one report each."""
    done = subprocess.run([sys.executable, str(REPO / "tests" / "lora_train" / "comfy_lora_check.py"),
                           str(checkpoint), *map(str, loras)],
                          cwd=comfyui_dir, env=dict(os.environ, PYTHONPATH=comfyui_dir),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(loras):]]
