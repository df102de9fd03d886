"""Device profiles for the VRAM / time estimate.

Each profile states its basis. ``tflops`` is the dense tensor-core throughput for fp16/bf16
matrix products with fp32 accumulation (what PyTorch's half-precision GEMMs use);
``efficiency`` is the share of it that diffusion inference reaches.

The CPU has no datasheet figure worth using (a 2-core VM and a 64-core workstation differ 50x),
so its profile is measured: ``cpu_profile`` times a 3x3 convolution (the bulk of a UNet's work)
and a memory copy with torch on this machine, best of a few tries, in about a second, and caches
the result in ``cpu_profile.json`` in Kubik's cache folder (keyed by CPU model, core count, the
torch thread setting and torch's installed version, all read without importing torch, so another
machine or setting measures again; measured again once a day at most, keeping the faster figure,
since other programs can only slow a measurement). ``CPU_EFFICIENCY`` is the share of that
convolution rate a whole UNet forward pass reaches (benchmarks/cpu_time_estimate.py measures it
against ComfyUI's own UNet).

"auto" is the device this process would sample on, found without importing torch where no GPU
can exist (importing torch takes seconds and most of a gigabyte, which the `kubik` command line
should not spend to learn there is no GPU): an NVIDIA driver shows in /proc/driver/nvidia/gpus or
/dev/nvidia*, and ``nvidia-smi`` then names the card; only a GPU nvidia-smi cannot describe, or
ROCm's /dev/kfd, makes it ask torch. ``measure=False`` (the command line without ``--calibrate``)
uses a cached CPU profile, or none: the plan then says the CPU time is not estimated yet.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..common.atomic import write_text_atomic
from ..common.paths import cache_dir
from .errors import ParamsError

log = logging.getLogger(__name__)

# Share of dense tensor peak that diffusion sampling reaches, counted as 2 x parameters x tokens
# (estimate.py). Checked on an H100 80GB (torch 2.11, bf16): a stack of plain transformer blocks
# of FLUX width (hidden 3072, 24 heads, MLP x4) reached 0.52 of the 989 TFLOPS peak at 4096
# tokens and 0.41 at 9216 (attention's quadratic share grows); real models add modulation,
# norms and RoPE, hence 0.4.
GPU_EFFICIENCY = 0.4


# Share of the calibration convolution's rate that a whole SD1.5 UNet forward pass reached on
# the CPU (ComfyUI 0.8.0's UNetModel, fp32, batch 2; benchmarks/RESULTS.md "cpu_time_estimate.py").
CPU_EFFICIENCY = 0.6


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    label: str
    memory_gb: float
    tflops: float
    efficiency: float
    dtype_bytes: int   # bytes per weight/activation value the device computes in
    basis: str
    bandwidth_gbs: float = 0.0   # measured memory copy rate (CPU); 0 = weight reads not modelled


DEVICES: dict[str, DeviceProfile] = {p.id: p for p in (
    # Placeholder figures: resolve_device("cpu") returns the measured profile (cpu_profile).
    DeviceProfile("cpu", "this machine's CPU", 32.0, 0.0, CPU_EFFICIENCY, 4,
                  "measured once per machine: fp32 3x3 convolution and memory copy rates with "
                  "torch (kubik_core/params/devices.py cpu_profile); ComfyUI computes in fp32 on "
                  "the CPU; 'VRAM' is system RAM here"),
    DeviceProfile("rtx3060_12gb", "NVIDIA RTX 3060 12GB", 12.0, 25.6, GPU_EFFICIENCY, 2,
                  "NVIDIA Ampere GA102 whitepaper per-SM FP16 tensor rate with FP32 accumulate "
                  "(GeForce: half rate), scaled to the 3060's 28 SMs at 1.78 GHz boost"),
    DeviceProfile("rtx4090", "NVIDIA RTX 4090 24GB", 24.0, 165.2, GPU_EFFICIENCY, 2,
                  "NVIDIA Ada Lovelace whitepaper: 165.2 dense FP16 tensor TFLOPS, FP32 accumulate"),
    DeviceProfile("a100_80gb", "NVIDIA A100 80GB", 80.0, 312.0, GPU_EFFICIENCY, 2,
                  "NVIDIA A100 datasheet: 312 dense BF16 tensor TFLOPS"),
    DeviceProfile("h100_80gb", "NVIDIA H100 80GB SXM", 80.0, 989.0, GPU_EFFICIENCY, 2,
                  "NVIDIA H100 datasheet: 989 dense BF16 tensor TFLOPS (SXM)"),
)}
DEVICE_CHOICES: tuple[str, ...] = ("auto",) + tuple(DEVICES)

# Substrings of torch.cuda.get_device_name() -> profile id, most specific first.
_GPU_NAMES = (("h100", "h100_80gb"), ("h200", "h100_80gb"), ("a100", "a100_80gb"),
              ("4090", "rtx4090"), ("3060", "rtx3060_12gb"))


def profile_for_gpu(name: str, memory_gb: float) -> tuple[DeviceProfile, str | None]:
    """The profile for a GPU by its name; unknown GPUs get the nearest profile by memory."""
    lowered = name.lower()
    for key, profile_id in _GPU_NAMES:
        if key in lowered:
            return DEVICES[profile_id], None
    profile_id = "a100_80gb" if memory_gb >= 40 else "rtx4090" if memory_gb >= 20 else "rtx3060_12gb"
    return DEVICES[profile_id], (f"no device profile for {name!r} ({memory_gb:.0f} GB): estimates use "
                                 f"the {DEVICES[profile_id].label} profile")


NVIDIA_SMI_QUERY = ("--query-gpu=name,memory.total,uuid", "--format=csv,noheader,nounits")
_NVIDIA_SMI_TIMEOUT_S = 10.0


def local_device(measure: bool = True, root: str | os.PathLike = "/") -> tuple[DeviceProfile, str | None]:
    """(profile, note) of the device this process would sample on outside ComfyUI: the first
    visible GPU, else this CPU. torch is imported only when a GPU may exist that nvidia-smi
    cannot describe (see the module docstring); ``root`` is where /proc and /dev are read."""
    gpu = local_gpu(root)
    if gpu is not None:
        return gpu
    profile, note = cpu_profile(measure=measure)
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        note += ("; Apple silicon's GPU (MPS) has no device profile yet, so this is the CPU's "
                 "figure: choose a device profile if ComfyUI samples on the GPU")
    return profile, note


def local_gpu(root: str | os.PathLike = "/") -> tuple[DeviceProfile, str | None] | None:
    """(profile, note) of the first GPU this process can use, or None (see local_device)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = visible is not None and visible.strip() in ("", "-1")
    signs = [] if hidden else gpu_signs(root)
    if any(sign.startswith("nvidia") for sign in signs):
        gpu = nvidia_smi_gpu(visible)
        if gpu is not None:
            return profile_for_gpu(*gpu)
    if signs:
        return _torch_gpu()
    return None


def gpu_signs(root: str | os.PathLike = "/") -> list[str]:
    """What under ``root`` shows a GPU driver: "nvidia /proc/driver/nvidia/gpus/...",
    "nvidia /dev/nvidia0", "rocm /dev/kfd"; empty when no GPU can be used here."""
    base = Path(root)
    signs: list[str] = []
    try:
        signs += [f"nvidia {entry}" for entry in sorted((base / "proc/driver/nvidia/gpus").iterdir())]
    except OSError:
        pass
    try:
        signs += [f"nvidia {entry}" for entry in sorted((base / "dev").glob("nvidia[0-9]*"))]
    except OSError:
        pass
    if (base / "dev/kfd").exists():
        signs.append(f"rocm {base / 'dev/kfd'}")
    return signs


def nvidia_smi_gpu(visible: str | None = None) -> tuple[str, float] | None:
    """(name, memory in GB) of the first GPU CUDA would use, from nvidia-smi; None when it is
    missing, fails or prints nothing usable. ``visible``: CUDA_VISIBLE_DEVICES."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, *NVIDIA_SMI_QUERY], capture_output=True, text=True,
                              errors="replace", timeout=_NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(done.stdout, visible) if done.returncode == 0 else None


def parse_nvidia_smi(text: str, visible: str | None = None) -> tuple[str, float] | None:
    """The GPU CUDA would number 0 in nvidia-smi's ``name, memory.total [MiB], uuid`` lines:
    the first, or the one CUDA_VISIBLE_DEVICES (``visible``: indices or UUIDs) names first.
    Lines that do not read as a GPU are skipped; None when none does."""
    gpus = []
    for line in text[:64 * 1024].splitlines()[:64]:
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 2 or not fields[0]:
            continue
        try:
            memory_gb = float(fields[1]) / 1024.0
        except ValueError:
            continue
        if 0 < memory_gb < 1e5:
            gpus.append((fields[0][:100], memory_gb, fields[2] if len(fields) > 2 else ""))
    if not gpus:
        return None
    first = (visible or "").split(",")[0].strip()
    chosen = gpus[0]
    if first.isascii() and first.isdigit() and int(first) < len(gpus):
        chosen = gpus[int(first)]
    elif first.startswith(("GPU-", "MIG-")):
        chosen = next((gpu for gpu in gpus if gpu[2] and gpu[2].startswith(first[:60])), chosen)
    return chosen[0], chosen[1]


def _torch_gpu() -> tuple[DeviceProfile, str | None] | None:
    """Ask torch (a GPU nvidia-smi could not describe, or a ROCm one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return profile_for_gpu(props.name, props.total_memory / 2**30)


@lru_cache(maxsize=1)
def _this_machines_gpu() -> tuple[DeviceProfile, str | None] | None:
    return local_gpu()


def resolve_device(device: str, measure: bool = True) -> tuple[DeviceProfile, str | None]:
    """(profile, note) for a device id or "auto"; ParamsError naming the valid ids otherwise.
    "cpu" is this machine's CPU, measured (cpu_profile); ``measure=False`` only reads a cached
    measurement and otherwise returns a CPU profile without a rate (time not estimated)."""
    if device == "cpu":
        return cpu_profile(measure=measure)
    if device in DEVICES:
        return DEVICES[device], None
    if device in ("auto", "", None):
        return _this_machines_gpu() or cpu_profile(measure=measure)
    raise ParamsError(f"device: unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")


# ------------------------------------------------------------------ CPU calibration
CPU_PROFILE_FILE = "cpu_profile.json"
REMEASURE_AFTER_S = 24 * 3600
_TRIES = 5


def default_cache_dir() -> Path:
    """$KUBIK_CACHE_DIR, else $XDG_CACHE_HOME/kubik, else ~/.cache/kubik (as the LoRA index)."""
    return cache_dir()


def cpu_profile(cache_dir: str | os.PathLike | None = None, measure: bool = True) -> tuple[DeviceProfile, str]:
    """load_cpu_profile, kept for the process once measured (``measure=False`` reads the small
    cache file on each call, so a measurement made meanwhile is seen)."""
    return _measured_cpu_profile(cache_dir) if measure else load_cpu_profile(cache_dir, measure=False)


@lru_cache(maxsize=4)
def _measured_cpu_profile(cache_dir: str | os.PathLike | None) -> tuple[DeviceProfile, str]:
    return load_cpu_profile(cache_dir)


def load_cpu_profile(cache_dir: str | os.PathLike | None = None, measure: bool = True) -> tuple[DeviceProfile, str]:
    """(this machine's measured CPU profile, a note saying what the time estimate rests on).

    Read from ``cpu_profile.json`` in ``cache_dir`` (default: default_cache_dir()) when it was
    measured on this machine with these settings, else measured now (about a second, with torch)
    and saved there; a cache folder that cannot be written only costs measuring again next time.
    Other programs running during a measurement can only make it slower, so a profile older than
    REMEASURE_AFTER_S is measured again, once, and the faster of the two figures is kept.
    ``measure=False`` never measures: an old profile is used as it is, and without one the
    profile has no rate (``tflops`` 0), which the optimizer reports as time not estimated.
    """
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / CPU_PROFILE_FILE
    machine = cpu_identity()
    measured = _read_profile(path, machine)
    base = DEVICES["cpu"]
    if measured is None and not measure:
        return replace(base, memory_gb=_ram_gb() or base.memory_gb), NOT_CALIBRATED_NOTE
    if measure and (measured is None or time.time() - measured["measured_at"] > REMEASURE_AFTER_S):
        gflops, bandwidth = measure_cpu()
        if measured is not None:
            gflops, bandwidth = max(gflops, measured["gflops"]), max(bandwidth, measured["bandwidth_gbs"])
        measured = {"gflops": gflops, "bandwidth_gbs": bandwidth, "measured_at": time.time()}
        _write_profile(path, machine, measured)
    when = time.strftime("%Y-%m-%d", time.localtime(measured["measured_at"]))
    profile = replace(base, tflops=measured["gflops"] / 1000.0, bandwidth_gbs=measured["bandwidth_gbs"],
                      memory_gb=_ram_gb() or base.memory_gb)
    note = (f"CPU time estimate from this machine's measured profile ({machine['cpu']}, "
            f"{machine['threads']} threads: {measured['gflops']:.0f} GFLOPS fp32 convolution, "
            f"{measured['bandwidth_gbs']:.0f} GB/s, measured {when}); it counts "
            "text encoding, sampling and VAE decoding on an otherwise idle machine, not loading "
            "the checkpoint (the first run after a start)")
    return profile, note


NOT_CALIBRATED_NOTE = ("CPU time not estimated yet: this CPU has not been measured; run the command "
                       "once with --calibrate (about two seconds: it times a convolution with torch "
                       "and keeps the figure in Kubik's cache folder)")


def measure_cpu(clock=time.perf_counter) -> tuple[float, float]:
    """(GFLOPS of an fp32 3x3 convolution at 320 channels and 64x64, as in SD1.5's first UNet
    stage; GB/s of a 256 MiB tensor copy), each the best of _TRIES, with torch's threads.
    ``clock``: wall time; the benchmark passes time.thread_time with torch on one thread, so
    that other programs on a shared machine do not count."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1, 320, 64, 64, generator=generator)
        weight = torch.randn(320, 320, 3, 3, generator=generator) * 0.02
        flops = 2.0 * 320 * 320 * 9 * 64 * 64
        F.conv2d(x, weight, padding=1)                        # warm-up: oneDNN picks its kernels
        conv = min(_timed(lambda: F.conv2d(x, weight, padding=1), clock) for _ in range(_TRIES))
        source = torch.ones(64 * 2**20)                       # 256 MiB: beyond any CPU cache
        target = torch.empty_like(source)
        target.copy_(source)
        copy = min(_timed(lambda: target.copy_(source), clock) for _ in range(_TRIES))
    return round(flops / conv / 1e9, 1), round(2 * source.numel() * 4 / copy / 1e9, 1)


def _timed(work, clock) -> float:
    start = clock()
    work()
    return max(clock() - start, 1e-9)


def cpu_identity() -> dict:
    """What the measurement depends on, read without importing torch: CPU model, logical cores,
    the thread count torch would use (OMP_NUM_THREADS, else the CPUs this process may run on)
    and torch's installed version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu[:100], "cores": os.cpu_count() or 1, "threads": _torch_threads(),
            "torch": _torch_version()}


def _torch_threads() -> int:
    setting = os.environ.get("OMP_NUM_THREADS", "").strip()
    if setting.isascii() and setting.isdigit() and 0 < int(setting) < 100_000:
        return int(setting)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")[:40]
    except PackageNotFoundError:
        return "not installed"


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return 0.0


def _read_profile(path: Path, machine: dict) -> dict | None:
    """The cached measurement for ``machine``, or None (missing, damaged, another machine)."""
    from ..common.bounded_json import BoundedJSONError, loads

    try:
        data = loads(path.read_bytes(), max_depth=4, max_bytes=64 * 1024)
    except (OSError, BoundedJSONError):
        return None
    if not isinstance(data, dict) or data.get("version") != 1 or data.get("machine") != machine:
        return None
    values = (data.get("gflops"), data.get("bandwidth_gbs"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e7 for v in values):
        return None
    measured_at = data.get("measured_at")
    if not (isinstance(measured_at, (int, float)) and not isinstance(measured_at, bool)
            and 0 <= measured_at < 1e11):
        measured_at = 0.0          # unknown: measured again (and the faster figure kept)
    return {"gflops": float(values[0]), "bandwidth_gbs": float(values[1]), "measured_at": float(measured_at)}


def _write_profile(path: Path, machine: dict, measured: dict) -> None:
    try:
        write_text_atomic(path, json.dumps({"version": 1, "machine": machine, **measured}))
    except OSError as exc:
        log.warning("KubikAI: could not save the CPU profile in %s: %s", path.parent, exc.strerror or exc)
