"""Peak memory and time per image for a sampling plan on a device profile.

The model, and what it leaves out:

* Weights: the diffusion model's parameter count (model card) x bytes per value: 2 (fp16/bf16)
  on GPUs, 1 with the low_vram priority for families that ship fp8 checkpoints, 4 on the CPU.
* Activations while sampling: ComfyUI's own estimate, comfy/model_base.py:379
  (memory_required): batch x latent height x latent width x dtype bytes x 0.01 x the family's
  memory_usage_factor, in MiB. The batch is 2 when CFG > 1 (conditional + unconditional pass).
* VAE decode: ComfyUI's KL-VAE reservation, comfy/sd.py:320 (2178 x latent h x w x 64 x dtype
  bytes, latent at 1/8 of the image). ComfyUI frees the diffusion model when decode needs it.
* Text encoding happens before sampling with its own weights resident.
* Peak = the largest of the three phases + 0.4 GB CUDA context on GPUs (assumption).
* Sampling time = steps x passes x 2 x parameters x tokens / (device TFLOPS x efficiency), where
  tokens = pixels / the family's pixels_per_token (256 for x8 VAE + patch-2 transformers; for
  UNets the figure that gives the FLOPs torch's flop counter counts on ComfyUI's UNetModel at the
  native size: SDXL 6.8 TFLOP per 1024^2 evaluation, SD1.5 0.80 per 512^2, SD2 2.1 per 768^2).
* On GPUs that is the whole figure: text encoding and VAE decoding take well under a second.
  On the CPU (a measured profile, devices.py) they take minutes, and a small image is bound by
  moving the weights rather than by arithmetic, so each phase also pays WEIGHT_TRAFFIC times its
  weight bytes over the measured memory bandwidth: text encoding (2 x text-encoder parameters x
  77 tokens per prompt), every sampling step, and the VAE decode (VAE_DECODE_FLOPS_PER_PIXEL,
  counted on ComfyUI's KL-f8 decoder, at DECODE_EFFICIENCY of the calibration rate).
* Loading the model (the first run after a start) is not counted anywhere.

These are planning figures: benchmarks/cpu_time_estimate.py checks the CPU figure against
ComfyUI's own UNet and VAE decoder on the machine it runs on (benchmarks/RESULTS.md).
"""
from __future__ import annotations

from .devices import DeviceProfile, resolve_device
from .families import FamilyProfile, get_family
from .plan import SamplingPlan

_GIB = float(2**30)
_MIB = float(2**20)
_CUDA_CONTEXT_GB = 0.4
# FLOPs per output pixel of the KL-f8 VAE decoder (ch 128, mult 1-2-4-4), counted with
# torch.utils.flop_counter on ComfyUI 0.8.0's comfy.ldm.modules.diffusionmodules.model.Decoder:
# 2.51 TFLOP at 512x512, 10.5 at 1024x1024 (its mid-block attention grows a little faster).
VAE_DECODE_FLOPS_PER_PIXEL = 9.6e6
PROMPT_TOKENS = 77       # CLIP's context; T5-based encoders read more, so their figure is a floor
# Measured on the CPU with ComfyUI's SD1.5 UNet and KL-f8 decoder (benchmarks/cpu_time_estimate.py,
# benchmarks/RESULTS.md): a 64x64 step took about 4x the time of reading its fp32 weights once
# beyond its arithmetic, and the decoder ran at about 0.8 of the calibration convolution's rate.
WEIGHT_TRAFFIC = 4.0
DECODE_EFFICIENCY = 0.8


def estimate_for(family: FamilyProfile, device: DeviceProfile, width: int, height: int,
                 steps: int, cfg: float, priority: str = "balanced") -> tuple[float, float | None]:
    """(peak memory in GB, seconds per image); see the module docstring for the model. The
    seconds are None on a device without a rate (a CPU not measured yet: devices.cpu_profile)."""
    dtype = device.dtype_bytes
    weight_bytes = 1 if (priority == "low_vram" and family.fp8_release and dtype == 2) else dtype
    passes = 2 if cfg > 1.0 else 1
    latent_area = (width / family.latent_scale) * (height / family.latent_scale)
    activations = passes * latent_area * dtype * 0.01 * family.memory_usage_factor * _MIB
    model = family.params_b * 1e9 * weight_bytes
    vae = family.vae_b * 1e9 * dtype
    decode = 2178.0 * (width / 8) * (height / 8) * 64 * dtype
    text = family.text_encoder_b * 1e9 * weight_bytes
    peak = max(model + vae + activations, vae + decode, text)
    context = _CUDA_CONTEXT_GB if device.id != "cpu" else 0.0
    vram_gb = peak / _GIB + context
    if device.tflops <= 0:
        return round(vram_gb, 2), None
    seconds = sum(time_parts(family, device, width, height, steps, cfg).values())
    return round(vram_gb, 2), round(seconds, 2)


def time_parts(family: FamilyProfile, device: DeviceProfile, width: int, height: int, steps: int,
               cfg: float) -> dict[str, float]:
    """Seconds per image by phase: "sampling"; on a device with a measured bandwidth (the CPU)
    also "text" and "decode" (see the module docstring)."""
    passes = 2 if cfg > 1.0 else 1
    rate = device.tflops * 1e12 * device.efficiency
    tokens = width * height / family.pixels_per_token
    step_flops = passes * 2.0 * family.params_b * 1e9 * tokens
    if not device.bandwidth_gbs:
        return {"sampling": steps * step_flops / rate}
    read = lambda params_b: WEIGHT_TRAFFIC * params_b * 1e9 * device.dtype_bytes / (device.bandwidth_gbs * 1e9)
    return {
        "text": passes * 2.0 * family.text_encoder_b * 1e9 * PROMPT_TOKENS / rate + read(family.text_encoder_b),
        "sampling": steps * (step_flops / rate + read(family.params_b)),
        "decode": (VAE_DECODE_FLOPS_PER_PIXEL * width * height / (device.tflops * 1e12 * DECODE_EFFICIENCY)
                   + read(family.vae_b)),
    }


def estimate(plan: SamplingPlan, device: str = "auto") -> tuple[float, float | None]:
    """(peak VRAM in GB, seconds per image) for ``plan`` on a device id of devices.DEVICES."""
    profile, _note = resolve_device(device)
    return estimate_for(get_family(plan.family), profile, plan.width, plan.height, plan.steps,
                        plan.cfg, plan.priority)
