"""Device profiles for the VRAM / time estimate.

Each profile states its basis. ``tflops`` is the dense tensor-core throughput for fp16/bf16
matrix products with fp32 accumulation (what PyTorch's half-precision GEMMs use), or for the CPU
a sustained fp32 figure; ``efficiency`` is the share of it that diffusion inference reaches.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .errors import ParamsError

# Share of dense tensor peak that diffusion sampling reaches, counted as 2 x parameters x tokens
# (estimate.py). Checked on an H100 80GB (torch 2.11, bf16): a stack of plain transformer blocks
# of FLUX width (hidden 3072, 24 heads, MLP x4) reached 0.52 of the 989 TFLOPS peak at 4096
# tokens and 0.41 at 9216 (attention's quadratic share grows); real models add modulation,
# norms and RoPE, hence 0.4.
GPU_EFFICIENCY = 0.4


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    label: str
    memory_gb: float
    tflops: float
    efficiency: float
    dtype_bytes: int   # bytes per weight/activation value the device computes in
    basis: str


DEVICES: dict[str, DeviceProfile] = {p.id: p for p in (
    DeviceProfile("cpu", "CPU (8-core AVX2 desktop, 32 GB RAM)", 32.0, 0.5, 1.0, 4,
                  "assumption: ~0.5 TFLOPS sustained fp32 GEMM on an 8-core AVX2 desktop; "
                  "ComfyUI computes in fp32 on the CPU; 'VRAM' is system RAM here"),
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


@lru_cache(maxsize=1)
def _local_device() -> tuple[DeviceProfile, str | None]:
    """The device this process would run on outside ComfyUI: the first CUDA GPU, else the CPU."""
    try:
        import torch
    except ImportError:
        return DEVICES["cpu"], None
    if not torch.cuda.is_available():
        return DEVICES["cpu"], None
    props = torch.cuda.get_device_properties(0)
    return profile_for_gpu(props.name, props.total_memory / 2**30)


def resolve_device(device: str) -> tuple[DeviceProfile, str | None]:
    """(profile, note) for a device id or "auto"; ParamsError naming the valid ids otherwise."""
    if device in DEVICES:
        return DEVICES[device], None
    if device in ("auto", "", None):
        return _local_device()
    raise ParamsError(f"device: unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
