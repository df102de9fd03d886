"""kubik_core.common.distributed: one process is rank 0 of 1; two torchrun processes on the CPU
(gloo) see each other."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kubik_core
from kubik_core.common.distributed import (DistInfo, all_gather_objects, barrier, init_distributed,
                                           resolve_device, shutdown)

REPO = Path(kubik_core.__file__).resolve().parents[1]


def test_one_process_is_rank_0_of_1_and_every_collective_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, device = init_distributed("cpu")
    assert info == DistInfo(0, 1, 0) and info.is_main and not info.enabled
    assert device == torch.device("cpu")
    assert all_gather_objects({"rank": 0}, info) == [{"rank": 0}]
    barrier(info)
    shutdown(info)
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("name, message", [
    ("tpu", "--device 'tpu' is not a device this command can use (auto, cpu, cuda, cuda:N or mps)"),
    ("cuda:x", "--device 'cuda:x' is not a device this command can use"),
    ("meta", "--device 'meta' is not a device this command can use"),
])
def test_a_device_that_is_no_device_is_named(name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_device(name)


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_says_what_to_use_instead():
    with pytest.raises(ValueError, match="--device cuda: no CUDA GPU is available here; use --device cpu"):
        resolve_device("cuda")


WORKER = textwrap.dedent("""
    import json, sys
    from kubik_core.common.distributed import all_gather_objects, barrier, init_distributed, shutdown

    info, device = init_distributed("cpu")
    gathered = all_gather_objects({"rank": info.rank, "square": info.rank ** 2}, info)
    barrier(info)
    if info.is_main:
        print(json.dumps({"world": info.world_size, "enabled": info.enabled,
                          "device": str(device), "gathered": gathered}))
    shutdown(info)
""")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_torchrun_processes_gather_in_rank_order(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"world": 2, "enabled": True, "device": "cpu",
                      "gathered": [{"rank": 0, "square": 0}, {"rank": 1, "square": 1}]}
