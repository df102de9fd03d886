"""Which device "auto" means, found without importing torch where no GPU can exist (issue 23:
`kubik params` took 2.7-3 s and 880 MB because --device auto imported torch).

nvidia-smi lies outside the project: tests put a stand-in script of that name first on PATH that
prints what the real one prints for the query. The /proc and /dev trees are real folders and
files written under a temporary root.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from kubik_core.params import devices
from kubik_core.params.devices import (CPU_PROFILE_FILE, NOT_CALIBRATED_NOTE, cpu_identity, gpu_signs,
                                       load_cpu_profile, local_device, parse_nvidia_smi)

H100_AND_4090 = ("NVIDIA H100 80GB HBM3, 81559, GPU-1a2b3c4d-0000-0000-0000-000000000001\n"
                 "NVIDIA GeForce RTX 4090, 24564, GPU-9f8e7d6c-0000-0000-0000-000000000002\n")


def _fake_nvidia_smi(folder, output: str, status: int = 0) -> None:
    """A `nvidia-smi` on PATH that prints ``output`` for the query local_device asks."""
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      'case "$*" in *--query-gpu=name,memory.total,uuid*)\n'
                      f"cat <<'KUBIK_END'\n{output}KUBIK_END\nexit {status};;\nesac\nexit 9\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def no_gpu_root(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "null").write_text("")
    return tmp_path


@pytest.fixture
def nvidia_root(no_gpu_root):
    (no_gpu_root / "proc/driver/nvidia/gpus/0000:01:00.0").mkdir(parents=True)
    (no_gpu_root / "dev/nvidia0").write_text("")
    (no_gpu_root / "dev/nvidiactl").write_text("")
    return no_gpu_root


def test_gpu_signs_read_the_driver_files(no_gpu_root, nvidia_root):
    assert gpu_signs(no_gpu_root / "missing") == []
    signs = gpu_signs(nvidia_root)
    assert any("proc/driver/nvidia/gpus/0000:01:00.0" in sign for sign in signs)
    assert any(sign.endswith("dev/nvidia0") for sign in signs)
    assert not any("nvidiactl" in sign for sign in signs)      # the control device is no GPU
    (nvidia_root / "dev/kfd").write_text("")
    assert gpu_signs(nvidia_root)[-1].startswith("rocm ")


def test_no_gpu_means_the_cpu_without_torch(no_gpu_root, tmp_path, monkeypatch):
    """With no driver files, "auto" is the CPU and torch is never asked."""
    monkeypatch.setitem(sys.modules, "torch", None)                  # importing it would fail
    monkeypatch.setattr(devices, "default_cache_dir", lambda: tmp_path / "cache")
    profile, note = local_device(measure=False, root=no_gpu_root)
    assert profile.id == "cpu" and profile.tflops == 0 and note == NOT_CALIBRATED_NOTE


def test_nvidia_smi_names_the_gpu(nvidia_root, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_nvidia_smi(bin_dir, H100_AND_4090)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local_device(root=nvidia_root)[0].id == "h100_80gb"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")                   # CUDA's device 0 is the 4090
    assert local_device(root=nvidia_root)[0].id == "rtx4090"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-9f8e7d6c")
    assert local_device(root=nvidia_root)[0].id == "rtx4090"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")                  # no GPU visible: the CPU
    monkeypatch.setattr(devices, "default_cache_dir", lambda: tmp_path / "cache")
    assert local_device(measure=False, root=nvidia_root)[0].id == "cpu"


def test_a_gpu_nvidia_smi_cannot_describe_asks_torch(nvidia_root, tmp_path, monkeypatch):
    """A driver without a working nvidia-smi: torch decides (here it cannot be imported, which
    shows it was asked; a real run gets the GPU torch sees)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_nvidia_smi(bin_dir, "", status=6)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError):
        local_device(root=nvidia_root)


@pytest.mark.parametrize("text,visible,expected", [
    (H100_AND_4090, None, ("NVIDIA H100 80GB HBM3", 81559 / 1024)),
    (H100_AND_4090, "1,0", ("NVIDIA GeForce RTX 4090", 24564 / 1024)),
    (H100_AND_4090, "7", ("NVIDIA H100 80GB HBM3", 81559 / 1024)),          # out of range: the first
    ("NVIDIA A100-SXM4-40GB, 40960\n", None, ("NVIDIA A100-SXM4-40GB", 40.0)),  # no uuid column
    ("No devices were found\n", None, None),
    ("NVIDIA X, [N/A], GPU-1\nNVIDIA Y, nan, GPU-2\n, 1024, GPU-3\n", None, None),
    ("NVIDIA Z, 1e400\nNVIDIA W, -5\n", None, None),
])
def test_nvidia_smi_output_is_read_or_skipped(text, visible, expected):
    found = parse_nvidia_smi(text, visible)
    if expected is None:
        assert found is None
    else:
        assert found[0] == expected[0] and found[1] == pytest.approx(expected[1])


def test_the_cpu_identity_imports_no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    machine = cpu_identity()
    assert machine["threads"] >= 1 and machine["cores"] >= 1 and machine["torch"]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_identity()["threads"] == 3


def test_without_a_cached_profile_the_time_is_not_estimated(tmp_path, monkeypatch):
    from kubik_core.params import optimize

    profile, note = load_cpu_profile(tmp_path, measure=False)
    assert profile.tflops == 0 and note == NOT_CALIBRATED_NOTE and not (tmp_path / CPU_PROFILE_FILE).exists()
    monkeypatch.setattr(devices, "default_cache_dir", lambda: tmp_path)
    devices._measured_cpu_profile.cache_clear()
    try:
        plan = optimize(None, "sd15", device="cpu", calibrate=False)
        assert plan.estimated_seconds is None and plan.estimated_vram_gb > 0
        assert NOT_CALIBRATED_NOTE in plan.notes
        measured = optimize(None, "sd15", device="cpu")                      # the library measures
        assert measured.estimated_seconds > 1 and (tmp_path / CPU_PROFILE_FILE).exists()
        again = optimize(None, "sd15", device="cpu", calibrate=False)        # now read from the cache
        assert again.estimated_seconds == measured.estimated_seconds
    finally:
        devices._measured_cpu_profile.cache_clear()


def _kubik(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`kubik ARGS` in a fresh interpreter, which then reports whether it imported torch."""
    code = ("import sys\nfrom kubik_core.cli import main\nstatus = main(sys.argv[1:])\n"
            "print('TORCH-IMPORTED' if 'torch' in sys.modules else 'NO-TORCH')\nsys.exit(status)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.timeout(240)
def test_kubik_params_and_explain_import_no_torch_without_a_gpu(tmp_path):
    """The command line on a machine without GPU driver files (this test machine; skipped where
    one is present) imports no torch, says when the CPU time is not estimated, and measures only
    with --calibrate."""
    if gpu_signs("/"):
        pytest.skip("this machine has GPU driver files: torch may be imported to describe the GPU")
    env = {**os.environ, "KUBIK_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    prompt = "cinematic close-up portrait of an old fisherman, soft window light"
    done = _kubik(["params", prompt, "--family", "sdxl", "--json"], env)
    assert done.returncode == 0, done.stderr
    output, marker = done.stdout.rsplit("\n", 2)[0], done.stdout.split()[-1]
    assert marker == "NO-TORCH"
    plan = json.loads(output)
    assert plan["device"] == "cpu" and plan["estimated_seconds"] is None
    assert NOT_CALIBRATED_NOTE in plan["notes"]
    done = _kubik(["explain", prompt, "--family", "flux_dev"], env)
    assert done.returncode == 0 and done.stdout.split()[-1] == "NO-TORCH", done.stderr
    assert "time not estimated yet" in done.stdout
    done = _kubik(["params", prompt, "--family", "sdxl", "--calibrate", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.rsplit("\n", 2)[0])["estimated_seconds"] > 0
    assert (tmp_path / "cache" / CPU_PROFILE_FILE).exists()
    done = _kubik(["params", prompt, "--family", "sdxl", "--json"], env)   # cached: no torch, a time
    assert done.stdout.split()[-1] == "NO-TORCH" and json.loads(done.stdout.rsplit("\n", 2)[0])["estimated_seconds"] > 0
