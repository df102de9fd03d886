"""`kubik classify train` as a 2-process torchrun on the CPU (gloo) agrees with one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kubik_core
from classify_data import TINY_VIT

REPO = Path(kubik_core.__file__).resolve().parents[1]


def _train_command(data: Path, out: Path) -> list[str]:
    return ["-m", "kubik_core", "classify", "train", "--data", str(data), "--out", str(out),
            "--arch", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(TINY_VIT),
            "--epochs", "2", "--batch-size", "16", "--lr", "2e-3", "--randaugment", "none",
            "--hflip", "0", "--color-jitter", "0", "--scale-min", "0.6", "--ema", "0.9",
            "--grad-accum", "2", "--workers", "0", "--device", "cpu", "--json"]


def _run(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_torchrun_two_processes_matches_one(small_split, tmp_path):
    single = _run(_train_command(small_split, tmp_path / "single"))
    double = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   *_train_command(small_split, tmp_path / "ddp")])
    assert single["epochs_run"] == double["epochs_run"] == 2

    one = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)
    two = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert one["step"] == two["step"] > 0  # same global batches, same number of optimizer steps
    for key in one["model"]:
        torch.testing.assert_close(two["model"][key], one["model"][key], rtol=1e-3, atol=1e-4, msg=key)
    for a, b in zip(one["history"], two["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_top1"] == pytest.approx(a["val_top1"], abs=1 / 24 + 1e-9)  # at most one image
